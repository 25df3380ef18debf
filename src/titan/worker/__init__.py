"""The Titan worker: leases jobs from a master, runs them, streams their output back.

Modules, one concept each:

* :mod:`~titan.worker.daemon` — the worker process: register, long-poll, heartbeat, drain
* :mod:`~titan.worker.connection` — HTTP to the master with patient retries
* :mod:`~titan.worker.workspace` — scripts, blob cache, project archives on disk
* :mod:`~titan.worker.assignment` — what the master hands over, and the job's environment
* :mod:`~titan.worker.supervisor` — running assignments (starter threads)
* :mod:`~titan.worker.attempt` — one attempt's output, exit, timeout and kill
* :mod:`~titan.worker.runner` — starting a process: zygote fork or subprocess
* :mod:`~titan.worker.zygote` / :mod:`~titan.worker.forkserver` — the warm forking
  interpreter and the worker's handle on it
* :mod:`~titan.worker.process` — a job process: group kill, exit notification
* :mod:`~titan.worker.loop` — the single I/O thread
* :mod:`~titan.worker.output` — cutting output into log lines
* :mod:`~titan.worker.reporter` — shipping logs and results in natural batches
"""

from titan.worker.daemon import Worker, run_worker

__all__ = ["Worker", "run_worker"]
