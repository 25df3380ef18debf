"""Schedules: a DAG submitted again at each tick of a cron expression in a time zone.

* :mod:`.rules` — pure: when an expression ticks (DST included), catch-up and overlap
* :mod:`.service` — the schedules on the master's loop: a timer per schedule, each tick
  recorded in the commit that submits its run, recovery at start; create, pause, resume,
  delete, run now
* :mod:`.views` — a schedule and its fires as the API, the CLI and the dashboard show them
"""
