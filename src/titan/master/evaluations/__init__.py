"""Evaluations: an agent against tasks, with simulated tools and a judge.

* :mod:`.service` — evaluations and tasks; starting and settling runs
* :mod:`.dispatch` — handing a task to the agent (a job, or a POST to its endpoint)
* :mod:`.proxy` — the tool proxy the agent calls: injected failures, passthrough, simulator
* :mod:`.judging` — scoring settled runs off the event loop
* :mod:`.views` — the data explorer and the trace view
"""
