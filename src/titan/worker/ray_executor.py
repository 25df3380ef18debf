"""Jobs as Ray tasks: ``titan worker --executor ray --ray-address ADDR``.

The worker leases jobs from the master like any other and hands each to a Ray cluster as one
task (:func:`titan.worker.ray_task.run_job`); the attempt on the worker reads its output, arms
its deadline and kills it exactly as it does a local process (the contract of
:mod:`titan.worker.executor`).

**Files.** The worker fetches a job's script or project archive as usual, then ships it: a
script's bytes travel with the task; a project (the extracted archive, a directory named by its
content hash) is zipped once and put in Ray's object store, where every job of that project
version on any node finds it. The node writes or extracts them under its own temporary
directory, so nodes share no disk with the worker (Ray's ``working_dir`` uploads would do the
same, but through a size-limited package cache and a slower runtime-env setup per job).

**Output.** The task is a streaming generator: each read of the job's pipes on the node is one
yielded object, consumed here in order by one thread per job that writes it into a pipe the
attempt reads — so the attempt's line splitting, ordering and end-of-file rules are the local
ones. A generator rides Ray's own channels (a node need not reach the worker, which a socket
back would need) and pushes each chunk as it is yielded (a queue actor would have to be
polled).

**Resources.** Every job takes one CPU; ``requirement: GPU`` adds ``num_gpus=1`` (Ray sets
``CUDA_VISIBLE_DEVICES``), another tag adds one of the custom resource of that name (matched
without regard to case), ``GENERAL`` nothing more. Without ``--capabilities`` the worker
advertises what the cluster has: ``GENERAL``, ``GPU`` when it has GPUs, and its custom
resources. A job whose resource is busy waits in Ray's queue (its timeout runs meanwhile).

**Stopping.** ``SIGTERM`` and ``SIGKILL`` reach the job's process group on its node through a
zero-CPU task pinned there (:func:`titan.worker.ray_task.signal_group`), so the job's handler
runs and its children die with it, as locally. A job not running yet is taken out of Ray's
queue with ``ray.cancel`` (one starting is interrupted, and kills what it started). Should the
task outlive a ``SIGKILL`` by :data:`KILL_BACKSTOP_SECONDS`, ``ray.cancel(force=True)`` kills
the Ray worker running it.

**Lost.** A node, raylet or Ray worker that dies under a job loses its attempt, which the
worker hands back to run again, spending no retry (:mod:`titan.worker.ray_failures`). When
this driver's own node dies, or the cluster stops answering, nothing more can run from here:
:meth:`RayExecutor.broken` says so at the next heartbeat and the worker stops.

**Slots.** The worker registers with the cluster's CPUs (``--slots`` overrides) and offers,
at every heartbeat, what Ray can run now: its own jobs plus the free CPUs
(``ray.available_resources()``), so a cluster that other work fills gets fewer jobs.

**Environment.** A job gets its node's environment, then the job's own variables and Titan's
(job token, master URL...); of the worker's environment only the credentials passed to every
job travel (the providers' keys, ``TITAN_JOB_ENV_PASS``). ``--sandbox`` and ``--run-as`` apply
to local processes only.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import signal
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from titan import errors
from titan.formats import name_problem
from titan.worker import fresh, ray_task
from titan.worker.assignment import inherited_env, passed_names
from titan.worker.executor import GENERAL, Executor, Launched, LaunchSpec
from titan.worker.loop import IOLoop
from titan.worker.process import Process
from titan.worker.ray_failures import lost_why, task_failure
from titan.worker.ray_health import RayHealth

log = logging.getLogger("titan.worker")

#: After a SIGKILL, how long a job's task may take to end before its Ray worker is killed.
KILL_BACKSTOP_SECONDS = 5.0
#: How long closing the executor waits for the jobs it killed to end.
CLOSE_WAIT_SECONDS = 5.0
#: Ray's own resources: not capabilities a job can ask for by name.
_BUILTIN = frozenset({"CPU", "GPU", "memory", "object_store_memory"})
_BUILTIN_PREFIXES = ("node:", "accelerator_type:")
#: Projects already in the object store, by directory (each holds its bytes there).
_PROJECTS_KEPT = 8


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`~titan.errors.ConfigError` saying how to get it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise errors.ConfigError("the Ray executor needs Ray: pip install 'titan-agents[ray]'") \
            from None


def shipped_env(environ: Mapping[str, str]) -> dict[str, str]:
    """What of the worker's environment a job on Ray gets: the credentials passed to every
    job. The rest describes this machine; the job runs on another (and gets that one's)."""
    passed = passed_names(environ)
    return {k: v for k, v in inherited_env(environ).items() if k in passed}


class RayExecutor(Executor):
    """Runs jobs as tasks of the Ray cluster at ``address`` (connected on construction)."""

    #: A task waiting on the master keeps its Ray CPU: a job leased on its slot would queue
    #: in Ray behind it instead of running on another worker.
    lends_waiting_slots = False

    def __init__(self, loop: IOLoop, *, address: str | None = None,
                 environ: Mapping[str, str] = os.environ) -> None:
        self.loop = loop
        ray = self.ray = import_ray()
        self.base_env = shipped_env(environ)
        self.address = address or environ.get("RAY_ADDRESS") or "auto"
        try:
            ray.init(address=self.address, namespace="titan", log_to_driver=False,
                     logging_level=logging.WARNING, ignore_reinit_error=True)
        except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError...
            raise errors.ConfigError(
                f"cannot connect to the Ray cluster at {self.address}: {exc}") from None
        # By value: the nodes need Ray and Python, not Titan (see titan.worker.ray_task).
        ray.cloudpickle.register_pickle_by_value(ray_task)
        ray.cloudpickle.register_pickle_by_value(fresh)
        self._run_job = ray.remote(num_returns="streaming", max_retries=0)(ray_task.run_job)
        self._signal_group = ray.remote(num_cpus=0, max_retries=0)(ray_task.signal_group)
        self._affinity = importlib.import_module(
            "ray.util.scheduling_strategies").NodeAffinitySchedulingStrategy
        # One thread: a job's SIGTERM always leaves before its SIGKILL.
        self._control = ThreadPoolExecutor(max_workers=1, thread_name_prefix="titan-ray-signal")
        self._lock = threading.Lock()
        self._jobs: set[RayProcess] = set()
        self._signals: set[Any] = set()  # signal tasks in flight (their refs kept till done)
        self._projects: OrderedDict[Path, Any] = OrderedDict()
        self._resource_names: dict[str, str] = {}
        self.health = RayHealth(ray, self.address, ray.get_runtime_context().get_node_id())
        self.capabilities()  # learns the custom resources' names

    # ------------------------------------------------------------------ what it offers

    def capabilities(self) -> list[str]:
        """``GENERAL``, ``GPU`` if the cluster has GPUs, and its custom resources."""
        resources = self.ray.cluster_resources()
        caps = [GENERAL] + (["GPU"] if resources.get("GPU") else [])
        names: dict[str, str] = {}
        for name in sorted(resources):
            if name in _BUILTIN or name.startswith(_BUILTIN_PREFIXES):
                continue
            tag = name.upper()
            if name_problem(tag, "capability") is None and tag not in (GENERAL, "GPU"):
                names[tag] = name
                caps.append(tag)
        self._resource_names = names
        return caps

    def default_slots(self) -> int:
        """The cluster's CPUs: as many jobs as it can run at once when nothing else runs."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 0)))

    def capacity(self) -> int | None:
        """The jobs running here plus the cluster's free CPUs as last read (by the health
        probe, asked for again here); None until Ray has said."""
        self.health.ask()
        if self.health.gone is not None:
            return 0
        free = self.health.free_cpus
        with self._lock:
            return None if free is None else len(self._jobs) + free

    def broken(self) -> str | None:
        """Why the cluster is gone for this worker, else None (:mod:`titan.worker.ray_health`)."""
        return self.health.broken()

    def lost(self, exc: BaseException) -> str | None:
        """Why a job's task was lost rather than failed (``exc`` is infrastructure's), else
        None; notes when the loss takes the whole cluster with it (this driver's node)."""
        why = lost_why(self.ray, exc)
        if why is None:
            return None
        exceptions = self.ray.exceptions
        if isinstance(exc, exceptions.LocalRayletDiedError) or (
                isinstance(exc, exceptions.NodeDiedError) and self.health.node_id in str(exc)):
            self.health.lose(why)
        return why

    # ------------------------------------------------------------------ starting

    def spawn(self, spec: LaunchSpec) -> Launched:
        if self.health.gone is not None:
            raise errors.ExecutorGone(self.health.gone)
        job, project = self._describe(spec)
        options: dict[str, Any] = {
            "num_cpus": 1, "name": f"titan:{spec.env.get('TITAN_JOB_REF') or spec.script.name}"}
        if spec.requirement == "GPU":
            options["num_gpus"] = 1
        elif spec.requirement != GENERAL:
            tag = spec.requirement.upper()
            options["resources"] = {self._resource_names.get(tag, spec.requirement): 1}
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            gen = self._run_job.options(**options).remote(job, project)
        except Exception as exc:
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            if self.lost(exc) is not None and self.health.gone is not None:
                raise errors.ExecutorGone(self.health.gone) from None
            raise errors.TitanError(f"cannot start {spec.script.name} on Ray: {exc}") from None
        process = RayProcess(self, gen, out_w, err_w)
        with self._lock:
            self._jobs.add(process)
        threading.Thread(target=process.follow, name="titan-ray-job", daemon=True).start()
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        return Launched(process, out_r, err_r, forked=False)

    def _describe(self, spec: LaunchSpec) -> tuple[dict[str, Any], Any]:
        """The task's arguments: the job as plain data, and its project's object (or None)."""
        script, project_dir = spec.script, spec.project_dir
        source: bytes | None = None
        project: Any = None
        try:
            if project_dir is not None:
                rel = script.relative_to(project_dir)
                if not script.is_file():
                    raise FileNotFoundError(f"{rel} is not in the project")
                project = self._project(project_dir)
            else:
                rel = script.relative_to(spec.cwd) if script.is_relative_to(spec.cwd) \
                    else Path(script.name)
                # The blob it was written from: the path may hold another project's
                # script of that name by now (titan.worker.fresh).
                source = fresh.read_code(spec.source) or script.read_bytes()
        except (OSError, ValueError) as exc:
            raise errors.TitanError(f"cannot start {script.name}: {exc}") from None
        interpreter = "python" if spec.runs_python else "bash" if script.suffix == ".sh" \
            else None
        job = {"script": rel.as_posix(), "source": source, "args": list(spec.args),
               "env": dict(spec.env), "sys_path": list(spec.sys_path),
               "interpreter": interpreter,
               "project_name": project_dir.name if project_dir is not None else None,
               "project_dir": str(project_dir) if project_dir is not None else None}
        return job, project

    def _project(self, directory: Path) -> Any:
        """The project's zip in the object store, put there once per directory (named by
        the archive's hash, so its content never changes)."""
        with self._lock:
            ref = self._projects.get(directory)
            if ref is not None:
                self._projects.move_to_end(directory)
                return ref
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for parent, dirs, files in os.walk(directory):
                dirs.sort()
                for name in sorted(files):
                    path = Path(parent) / name
                    zf.write(path, path.relative_to(directory).as_posix())
        ref = self.ray.put(buf.getvalue())
        with self._lock:
            self._projects[directory] = ref
            while len(self._projects) > _PROJECTS_KEPT:
                self._projects.popitem(last=False)
        return ref

    # ------------------------------------------------------------------ stopping

    def signal_on(self, node: str, pid: int, ticks: int | None, sig: int) -> None:
        """Send ``sig`` to a job's process group on its node (any thread; does not wait)."""
        strategy = self._affinity(node_id=node, soft=False)
        ref = self._signal_group.options(scheduling_strategy=strategy).remote(pid, ticks, sig)
        with self._lock:
            self._signals.add(ref)

        def landed(future: Any) -> None:
            with self._lock:
                self._signals.discard(ref)
            if future.exception() is not None:
                log.warning("signalling a job on Ray node %s failed: %s", node[:12],
                            future.exception())

        ref.future().add_done_callback(landed)

    def control(self, fn: Any, *args: Any) -> None:
        """Run a Ray call for a job off the I/O thread, in the order asked."""
        try:
            self._control.submit(fn, *args)
        except RuntimeError:  # closed: close() has killed every job already
            pass

    def forget(self, process: RayProcess) -> None:
        with self._lock:
            self._jobs.discard(process)

    def close(self) -> None:
        """Kill the jobs still running (a job must not outlive its worker unwatched), then
        leave the cluster."""
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.stop(signal.SIGKILL)
        deadline = time.monotonic() + CLOSE_WAIT_SECONDS
        for job in jobs:
            if not job.done.wait(max(0.0, deadline - time.monotonic())):
                job.cancel_forcibly()
        self._control.shutdown(wait=True)
        self.ray.shutdown()


class RayProcess(Process):
    """A job running as a Ray task, as the attempt sees a process."""

    def __init__(self, executor: RayExecutor, gen: Any, stdout: int, stderr: int) -> None:
        super().__init__(0)  # the pid on its node once it runs; only ever logged
        self._executor = executor
        self.gen = gen
        self._pipes: dict[str, int | None] = {"stdout": stdout, "stderr": stderr}
        #: (node id, pid, start ticks) once the job's process runs on its node.
        self._where: tuple[str, int, int | None] | None = None
        self.done = threading.Event()  # the task has ended (output all written)

    def kill_group(self, sig: int) -> None:
        """Signal the job's group on its node (I/O thread; the Ray calls happen off it)."""
        if self.done.is_set():
            return
        self._executor.control(self.stop, sig)
        if sig == signal.SIGKILL:
            self._executor.loop.call_later(KILL_BACKSTOP_SECONDS, self._backstop)

    def kill_leftovers(self, sig: int) -> bool:
        """Not from here: the pid is the node's, and a signal sent through Ray at every job's
        end would cost a remote task each. (A child still holding the job's pipes is killed
        after the grace all the same, through :meth:`kill_group`.)"""
        return False

    def stop(self, sig: int) -> None:
        """Send ``sig`` now (blocking on Ray's calls: not on the I/O thread)."""
        where = self._where
        try:
            if where is None:
                # Queued: Ray drops it. Starting: interrupted, it kills what it started.
                self._executor.ray.cancel(self.gen, force=False)
            else:
                self._executor.signal_on(*where, sig)
        except Exception as exc:
            log.warning("cannot stop a job on Ray: %s", exc)

    def _backstop(self) -> None:
        if not self.done.is_set():
            log.warning("a job's Ray task outlived its SIGKILL; killing its Ray worker")
            self._executor.control(self.cancel_forcibly)

    def cancel_forcibly(self) -> None:
        try:
            self._executor.ray.cancel(self.gen, force=True)
        except Exception as exc:
            log.warning("cannot cancel a job's Ray task: %s", exc)

    # ------------------------------------------------------------------ the job's thread

    def follow(self) -> None:
        """Consume the task's stream: output into the pipes, the exit to the attempt."""
        ray, loop = self._executor.ray, self._executor.loop
        told = False
        error: str | None = None
        try:
            for ref in self.gen:
                item = ray.get(ref)
                kind = item[0]
                if kind == "exit":
                    told = True
                    loop.call(self.set_exited, item[1], item[2])
                elif kind == "started":
                    self._where = (item[1], item[2], item[3])
                    self.pid = item[2]
                else:
                    self._write(kind, item[1])
        except Exception as exc:
            lost = self._executor.lost(exc)
            # Before the exit is told (on the I/O thread, after this): the attempt reads it.
            self.lost = lost is not None
            error = lost or task_failure(ray, exc)
        finally:
            for name, fd in self._pipes.items():
                if fd is not None:
                    os.close(fd)
                    self._pipes[name] = None
            if not told:
                loop.call(self.set_exited, None, error or "the Ray task ended without an exit")
            self.done.set()
            self._executor.forget(self)

    def _write(self, stream: str, data: bytes) -> None:
        fd = self._pipes.get(stream)
        if fd is None:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError:  # the attempt stopped reading (it gave up on lingering children)
            os.close(fd)
            self._pipes[stream] = None
