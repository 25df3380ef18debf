"""The Titan master: one asyncio process that owns the database, schedules and serves.

Packages and modules, one concept each (``docs/architecture.md`` is the long form):

* :mod:`~titan.master.app` — the ASGI app: routers, middleware, start-up and recovery
* :mod:`~titan.master.server` / :mod:`~titan.master.embedded` — ``titan master`` and
  ``titan up`` (the master plus a local worker)
* :mod:`~titan.master.config` — every setting; :mod:`~titan.master.context` — what every
  request handler reaches; :mod:`~titan.master.events` — long-poll waiters
  and the event feed; :mod:`~titan.master.idempotency` — retried writes applied once;
  :mod:`~titan.master.egress` — where the master's own outbound calls may go
* :mod:`~titan.master.scheduling` — jobs and DAGs: the engine (decide in memory, commit in
  order), the scheduler's state machine and its parts (gates, holds, membership), validation,
  references, views, the workers' protocol
* :mod:`~titan.master.auth` — tokens, job tokens, worker credentials, dashboard sessions
* :mod:`~titan.master.runs` — agent runs: the service, action ingestion, views, export
* :mod:`~titan.master.replays` — replays and the determinism report
* :mod:`~titan.master.schedules` — cron schedules: a run per tick, recorded with its run
* :mod:`~titan.master.evaluations` — evaluations: the service, dispatch to the agent, the tool
  proxy, judging, views
* :mod:`~titan.master.api` — the REST routers, and what every request passes through (body
  parsing, limits, dependencies, the OpenAPI description)

Imports go downwards: api → the services (scheduling, auth, runs, replays, evaluations) →
storage, llm, trace and the SDK's leaves. Nothing is imported here, so importing one module
does not load the master.
"""
