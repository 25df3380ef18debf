"""An interpreter another user (``nobody``) can run, for the ``--run-as`` tests.

A worker started with ``--run-as USER`` runs its jobs with its own interpreter as USER, and
refuses to start when USER cannot read it (worker/isolation.py). A developer's interpreter
often lives in a private home (pyenv's under ``/root``, mode 0700), so those tests skipped on
every machine we ran them on, and what they guard was never run. When that is so, this makes
a virtual environment of the system's interpreter of the same version in a directory anyone
may read, whose path holds this interpreter's site-packages (Titan and its dependencies, as
installed here) — usable when those are readable too.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

NOBODY = 65534
_made: dict[str, str | None] = {}


def _readable_by_nobody(path: Path) -> bool:
    """Whether uid/gid 65534 can reach ``path``: every directory above it searchable by
    others, and the path itself readable (by mode bits: a test's estimate, not the kernel's)."""
    path = path.resolve()
    for parent in [*reversed(path.parents), path]:
        try:
            mode = parent.stat().st_mode
        except OSError:
            return False
        needed = 0o005 if parent.is_dir() else 0o004
        if mode & needed != needed:
            return False
    return True


def _needed_paths(python_dirs: list[Path]) -> bool:
    return all(_readable_by_nobody(p) for p in python_dirs)


def interpreter() -> str | None:
    """A Python that ``nobody`` can run with Titan importable (``sys.executable`` when it can
    already), or None when none can be made here."""
    if "python" in _made:
        return _made["python"]
    _made["python"] = found = _find()
    return found


def _find() -> str | None:
    from titan.worker.isolation import _python_dirs

    if _needed_paths(_python_dirs()):
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = next((p for p in (f"/usr/bin/{version}", f"/usr/local/bin/{version}")
                   if os.path.exists(p) and _readable_by_nobody(Path(p))
                   and not Path(p).resolve().is_relative_to(Path(sys.prefix).resolve())), None)
    ours = [Path(p) for p in dict.fromkeys([*site.getsitepackages(),
                                            sysconfig.get_paths()["purelib"]])]
    import titan

    titan_home = Path(titan.__file__).resolve().parent.parent
    if system is None or not all(_readable_by_nobody(p) for p in [*ours, titan_home]):
        return None
    home = Path(tempfile.mkdtemp(prefix="titan-nobody-python-"))
    home.chmod(0o755)
    try:
        subprocess.run([system, "-m", "venv", "--without-pip", str(home)], check=True,
                       capture_output=True, timeout=120)
        purelib = subprocess.run([str(home / "bin" / "python"), "-c",
                                  "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True,
                                 timeout=60).stdout.strip()
        # addsitedir, not a bare path: the .pth files there (an editable install's) count too.
        lines = [f"import site; site.addsitedir({str(p)!r})" for p in ours]
        lines.append(str(titan_home))
        Path(purelib, "titan_tests_nobody.pth").write_text("\n".join(lines) + "\n")
        for root, dirs, files in os.walk(home):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
            for name in files:
                p = os.path.join(root, name)
                if not os.path.islink(p):
                    os.chmod(p, 0o755 if os.access(p, os.X_OK) else 0o644)
        python = str(home / "bin" / "python")
        check = subprocess.run([python, "-c", "import titan.worker.isolation, httpx"],
                               capture_output=True, timeout=120)
        if check.returncode != 0:
            shutil.rmtree(home, ignore_errors=True)
            return None
        return python
    except (OSError, subprocess.SubprocessError):
        shutil.rmtree(home, ignore_errors=True)
        return None
