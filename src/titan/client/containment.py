"""What a folder may send: the files inside it, symlinks included only while they point inside.

Whatever the SDK uploads on behalf of a folder — a pipeline's scripts, a project folder's
archive, the working tree of ``titan replay --code current`` — comes from inside that folder.
A symlink is followed only when its target (resolved: every link on the way, ``..``
included) lies inside too: a repository cloned from someone else can hold
``settings.cfg -> ~/.aws/credentials`` or ``notes.txt -> ../../.ssh/id_rsa``, and uploading the
folder must not send the files they name. A link pointing inside is as good as the file or
folder it names: its contents are sent under the link's own name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from titan.errors import ValidationFailed


def outside(path: Path, folder: Path) -> Path | None:
    """``path``'s target, resolved, when it lies outside ``folder`` (itself resolved); else
    None."""
    target = path.resolve()
    return None if target.is_relative_to(folder.resolve()) else target


def folder_files(root: Path, skip_dirs: frozenset[str] = frozenset(),
                 skip_suffixes: tuple[str, ...] = ()) -> Iterator[tuple[str, Path]]:
    """``(name inside root, path)`` of every file under ``root``, sorted, folders named in
    ``skip_dirs`` and files ending in ``skip_suffixes`` left out (before their links are
    looked at: a ``.venv`` linked from elsewhere is simply not sent).

    A symlink to a file or a folder inside ``root`` is followed (a folder's files are listed
    under the link's name); one whose target lies outside is refused
    (:class:`~titan.errors.ValidationFailed` naming the link and its target), as is a link to
    a folder that holds it (the walk would never end). A link to nothing is left out, as any
    entry that is neither a file nor a folder is.
    """
    base = root.resolve()
    yield from _walk(root, base, PurePosixPath(), (base,), skip_dirs, skip_suffixes)


def _walk(folder: Path, base: Path, rel: PurePosixPath, chain: tuple[Path, ...],
          skip_dirs: frozenset[str], skip_suffixes: tuple[str, ...]
          ) -> Iterator[tuple[str, Path]]:
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        path, name = Path(entry.path), rel / entry.name
        is_dir = entry.is_dir()  # follows a link, as is_file does
        if not is_dir and not entry.is_file():
            continue  # a link to nothing, a socket, a FIFO: nothing to read
        if entry.name in skip_dirs if is_dir else entry.name.endswith(skip_suffixes):
            continue
        if entry.is_symlink():
            target = outside(path, base)
            if target is not None:
                raise ValidationFailed(
                    f"{name} in {base} is a symlink to {target}, outside the folder: refused, "
                    "so that uploading a folder sends only what is in it (copy the file in "
                    "instead of linking it)",
                    details={"field": "folder", "link": str(name), "target": str(target)})
        if is_dir:
            real = path.resolve()
            if real in chain:
                raise ValidationFailed(
                    f"{name} in {base} is a symlink to {real}, a folder that holds it: the "
                    "folder would be sent inside itself without end",
                    details={"field": "folder", "link": str(name), "target": str(real)})
            yield from _walk(path, base, name, (*chain, real), skip_dirs, skip_suffixes)
        else:
            yield name.as_posix(), path
