"""Agent runs: what an agent did, action by action.

* :mod:`.service` — opening, ending and budgeting runs; recording action batches
* :mod:`.ingest` — validating and canonicalising what the SDK sends
* :mod:`.views` — the run registry, a run, its actions and timeline as pages and API show them
* :mod:`.export` — runs and actions as JSONL/CSV, streamed page by page
* :mod:`.ledger` — verifying a run's tamper-evident chain; the Activity Ledger's verdicts
"""
