"""The Titan worker: leases jobs from a master, runs them, streams their output back.

Modules, one concept each:

* :mod:`~titan.worker.daemon` — the worker process: register, heartbeat, drain, stop;
  :mod:`~titan.worker.lease_thread` its calls to the master and the thread that registers
  and heartbeats, :mod:`~titan.worker.wakeup` the self-pipe its main thread waits on
* :mod:`~titan.worker.intake` — busy slots and the assignments that fill them, taken over
  :mod:`~titan.worker.channel` (one WebSocket: jobs pushed, reports acked; the default) or
  :mod:`~titan.worker.poller` (HTTP: the long-poll and quick fetches)
* :mod:`~titan.worker.connection` — HTTP to the master with patient retries;
  :mod:`~titan.worker.tls_failures` TLS failures said clearly, tried slowly once they last
* :mod:`~titan.worker.workspace` — scripts, blob cache, project archives on disk
* :mod:`~titan.worker.assignment` — what the master hands over, and the job's environment
* :mod:`~titan.worker.supervisor` — running assignments (starter threads)
* :mod:`~titan.worker.attempt` — one attempt's output, exit, timeout and kill
* :mod:`~titan.worker.service` — a service's attempt: its port, readiness and health checks,
  restarts in place, graceful stop
* :mod:`~titan.worker.service_network` — where services are reached, a free port, one check
* :mod:`~titan.worker.executor` — where a job runs: the interface every executor implements
* :mod:`~titan.worker.runner` — the local executor: zygote fork or subprocess
* :mod:`~titan.worker.ray_executor` / :mod:`~titan.worker.ray_task` — the Ray executor: each
  job a task of a Ray cluster (``--executor ray``), and the task's side on the node
* :mod:`~titan.worker.zygote` / :mod:`~titan.worker.forkserver` — the warm forking
  interpreter and the worker's handle on it
* :mod:`~titan.worker.isolation` / :mod:`~titan.worker.landlock` — opt-in isolation of jobs
  (``--run-as``, ``--sandbox``) and the Landlock bindings it uses
* :mod:`~titan.worker.process` — a job process: group kill, exit notification
* :mod:`~titan.worker.loop` — the single I/O thread
* :mod:`~titan.worker.output` — cutting output into log lines
* :mod:`~titan.worker.reporter` — shipping logs and results in natural batches
* :mod:`~titan.worker.settings` — the worker's settings from its environment, each checked
  at start (``titan up`` checks them before it starts its master)

The package imports its machinery lazily: ``python -m titan.worker.zygote`` imports this
package first, and every module the zygote holds makes each of its forks slower.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from titan.worker.daemon import Worker, run_worker

__all__ = ["Worker", "run_worker"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from titan.worker import daemon

        return getattr(daemon, name)
    raise AttributeError(f"module 'titan.worker' has no attribute {name!r}")
