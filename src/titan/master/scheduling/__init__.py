"""Jobs and DAGs: what runs where and when.

* :mod:`.engine` — decides in memory, hands every decision to the group-commit writer in the
  same loop step, acts after the commit (events, long-polls, dispatch, timers); its parts,
  mixins that see it only as :mod:`.engine_core`'s ``EngineCore``: :mod:`.engine_recovery`
  (unfinished DAGs back into memory), :mod:`.engine_submission`, :mod:`.engine_control`
  (cancel, retry, gate decisions) and :mod:`.engine_workers` (liveness, leases, fencing)
* :mod:`.scheduler` — the pure state machine: ready queues per capability, DAG progress,
  leases; :mod:`.state` its records and change sets; :mod:`.leasing` leases taken, renewed
  and lost, :mod:`.outcomes` results, cancels and retries, :mod:`.progress` a DAG's
  progress and status, :mod:`.gates` approval gates, :mod:`.services` service jobs (health,
  address, stop), :mod:`.holds` budget holds, :mod:`.membership` workers joining and
  leaving — parts that see the scheduler only as :mod:`.protocol`'s ``SchedulerCore``, so
  none imports it
* :mod:`.validation` — a submitted DAG, whole; :mod:`.refs` — job and DAG references;
  :mod:`.views` — jobs and DAGs as the API shows them
* :mod:`.worker_protocol` — register, poll, heartbeat, report; :mod:`.worker_clock` how far
  each worker's clock is from the master's; :mod:`.worker_names` a worker's name, unique
  among live workers; :mod:`.worker_views` the workers as the API and the Cluster page show
  them
"""
