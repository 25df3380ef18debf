"""Agent runs: what an agent did, action by action.

* :mod:`.service` — opening, ending and budgeting runs; recording action batches (the event
  loop's side: commit, then publish); what their transactions do: :mod:`.actions` a batch
  appended, :mod:`.updates` a run's fields and status as an update changes them,
  :mod:`.budgets` a run blocked past its budget, :mod:`.stages` the run a DAG opens, its
  code version, the end its last stage gives
* :mod:`.events` — what a run's events carry; :mod:`.lookup` — a run by id (or the 404), and
  time windows
* :mod:`.ingest` — validating and canonicalising what the SDK sends
* :mod:`.views` — the run registry, a run, its actions and timeline as pages and API show them
* :mod:`.export` — runs and actions as JSONL/CSV, streamed page by page
* :mod:`.ledger` — verifying a run's tamper-evident chain; the Activity Ledger's verdicts
"""
