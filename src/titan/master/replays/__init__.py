"""Replays: a run's code again at zero cost, and how far the copy strayed.

* :mod:`.service` — starting a replay or fork from a recorded run
* :mod:`.report` — the per-action comparison and the determinism score
"""
