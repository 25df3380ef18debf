"""A job's side of a Ray task: lay its files out on the Ray node, run it, stream what it says.

The Ray executor (:mod:`titan.worker.ray_executor`) sends these functions to the cluster by
value, so this module imports nothing but the standard library and :mod:`titan.worker.fresh`
(standard library only, sent by value too): a node needs Ray and Python, not Titan (a job that
imports the SDK needs it there, like any library it imports). A Python or shell script runs
from the bytes the task was given, as on a worker (:mod:`titan.worker.fresh`): another job's
script of the same name may be written at its path meanwhile.

:func:`run_job` is a streaming generator task (``num_returns="streaming"``). It writes the
script under ``<tmp>/titan-ray-<uid>/shared`` (the job's working directory, as
``titan_workspace/shared`` is on a worker) or extracts the job's project archive under
``projects/``, runs the script in a session of its own — its process group is the job — and
yields, in this order:

* ``("started", node_id, pid, ticks)`` once the process exists. The worker signals the group
  through :func:`signal_group`, a zero-CPU task pinned to this node; ``ticks`` (the process's
  start time) keeps a recycled pid from being signalled.
* ``("stdout" | "stderr", bytes)``: what one read of that pipe returned — a line as soon as the
  job writes it, or many lines at once when it writes faster than they travel, so a chatty job
  costs one Ray object per read, not one per line.
* ``("exit", code, error)`` once the main process has ended. Output may follow, from children
  that still hold its pipes (the worker kills them after its grace, as it does locally); the
  generator ends at end-of-file on both pipes.

A task interrupted before that (``ray.cancel``, which raises ``KeyboardInterrupt`` in it) kills
the job's process group on its way out, so a job never outlives its task unwatched.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from titan.worker.fresh import bash_argv, code_pipe, own_folder, path_argv, python_argv

#: How long one wait for output lasts. ``ray.cancel`` raises its KeyboardInterrupt without
#: a real signal, so a blocked ``select`` notices it only when it returns.
POLL_SECONDS = 0.25
_CHUNK = 65536


def node_root() -> Path:
    """Where jobs' files live on this node (one tree per OS user), private to that user.

    Its name is anyone's to foresee: another local user who made it first had every job's
    script written into their folder and run from there, theirs to replace. One that is not
    this user's own folder is refused (as ssh-agent and tmux refuse theirs), not used; one an
    older Titan made with the umask's mode is tightened to 0700."""
    root = Path(tempfile.gettempdir()) / f"titan-ray-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o700)
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        what = (f"is owned by uid {st.st_uid}, not by uid {os.getuid()} who runs this node's "
                "jobs" if st.st_uid != os.getuid() else "is not a folder (a link?)")
        raise PermissionError(f"{root} {what}: another local user may have made it to have "
                              "jobs run what they put there, so it is not used; remove it")
    if st.st_mode & 0o077:
        os.chmod(root, 0o700)
    return root


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux); None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def signal_group(pid: int, ticks: int | None, sig: int) -> bool:
    """Send ``sig`` to the job's process group ``pid``, unless ``pid`` now names a process
    that started at another time (the job ended and the pid was given to someone else).

    A group whose leader has ended is still signalled: its children may hold the job's pipes,
    and the kernel gives no process a pid that is still some group's id."""
    now = start_ticks(pid)
    if ticks is not None and now is not None and now != ticks:
        return False
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"refusing path {name!r}: it must stay inside the job's directory")
    return path


def _write_if_changed(dest: Path, data: bytes, mode: int) -> None:
    """Jobs running at once may share a script path: write only when the content differs,
    and atomically, so a job starting meanwhile sees the old file or the new, never half."""
    with contextlib.suppress(OSError):
        if dest.read_bytes() == data:
            return
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _extract_once(archive: bytes, target: Path) -> None:
    """Extract a project (content-addressed by its name) once per node, atomically: a job
    never sees half a project, and jobs extracting it at once agree on one copy."""
    if target.is_dir():
        return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            for info in zf.infolist():
                _relative(info.filename)
                zf.extract(info, tmp)
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    os.chmod(tmp / info.filename, mode)  # zipfile drops permissions
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # lost a race to another job: its copy is as good
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _layout(job: dict[str, Any], project: bytes | None) -> tuple[Path, Path, Path | None]:
    """(script, working directory, project root) on this node, files written."""
    root = node_root()
    shared = root / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    script_rel = _relative(job["script"])
    if project is not None:
        project_root = root / "projects" / _relative(job["project_name"]).name
        _extract_once(project, project_root)
        return project_root.joinpath(*script_rel.parts), shared, project_root
    script = shared.joinpath(*script_rel.parts)
    _write_if_changed(script, job["source"], 0o644 if job["interpreter"] == "python" else 0o755)
    return script, shared, None


def _argv_env(job: dict[str, Any], script: Path, shared: Path, project_root: Path | None,
              code_fd: int | None = None) -> tuple[list[str], dict[str, str]]:
    # The node's environment (PATH, HOME, CUDA_VISIBLE_DEVICES for a GPU task...), then the
    # job's; paths of the worker's machine become this node's.
    env = {**os.environ, **job["env"]}
    if "TITAN_WORKSPACE" in env:
        env["TITAN_WORKSPACE"] = str(shared)
    env["PWD"] = str(shared)  # where it runs here, not the worker's directory there
    env.pop("OLDPWD", None)
    if project_root is not None and "TITAN_PROJECT_DIR" in env:
        env["TITAN_PROJECT_DIR"] = str(project_root)
    args = [str(a) for a in job["args"]]
    if job["interpreter"] == "python":
        path = [str(project_root) if p == job.get("project_dir") else p
                for p in job["sys_path"]]
        if path:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [*path, env.get("PYTHONPATH")]))
        own = own_folder(project_root)
        if code_fd is not None:
            return python_argv(sys.executable, script, code_fd, args, own), env
        return path_argv(sys.executable, script, args, own), env
    if job["interpreter"] == "bash":
        return bash_argv(script, job["source"], args), env
    return [str(script), *args], env


def run_job(job: dict[str, Any], project: bytes | None) -> Iterator[tuple[Any, ...]]:
    """Run one job on this node, yielding what the module docstring lists."""
    ray: Any = importlib.import_module("ray")
    script, shared, project_root = _layout(job, project)
    code_fd = (code_pipe(job["source"]) if job["interpreter"] == "python" and job["source"]
               else None)
    argv, env = _argv_env(job, script, shared, project_root, code_fd)
    try:
        proc = subprocess.Popen(argv, cwd=shared, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                                start_new_session=True, close_fds=True,
                                pass_fds=() if code_fd is None else (code_fd,))
    except OSError as exc:
        yield ("exit", None, f"cannot start {script.name}: {exc}")
        return
    finally:
        if code_fd is not None:
            os.close(code_fd)  # the job holds it now
    finished = False
    try:
        yield ("started", ray.get_runtime_context().get_node_id(), proc.pid,
               start_ticks(proc.pid))
        yield from _follow(proc)
        finished = True
    finally:
        if not finished:  # interrupted: the job goes with its task
            signal_group(proc.pid, None, signal.SIGKILL)
        if proc.returncode is None:
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def _follow(proc: subprocess.Popen[bytes]) -> Iterator[tuple[Any, ...]]:
    assert proc.stdout is not None and proc.stderr is not None
    streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    try:
        exit_fd: int | None = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfds: the exit is looked for at every wait
        exit_fd = None
    exited = False
    try:
        while streams or not exited:
            watched = [*streams, *([exit_fd] if exit_fd is not None and not exited else [])]
            ready, _, _ = select.select(watched, [], [], POLL_SECONDS)
            for fd in ready:
                if fd in streams:
                    data = os.read(fd, _CHUNK)
                    if data:
                        yield (streams[fd], data)
                    else:
                        del streams[fd]
            # After the reads: output already in the pipes goes out before the exit.
            if not exited and (exit_fd in ready if exit_fd is not None
                               else proc.poll() is not None):
                exited = True
                yield ("exit", proc.wait(), None)
    finally:
        if exit_fd is not None:
            os.close(exit_fd)
