"""Whether a Ray executor's cluster is still there for its worker, asked off the heartbeat.

Ray keeps a driver whose raylet died, and every job given to it then fails at once
(``LocalRayletDiedError``); with the GCS gone, Ray's calls block and Ray aborts the process
after a minute, with nothing of Titan's said. So the worker asks the cluster from a thread of
its own (a question that blocks holds no heartbeat), each heartbeat sends a new question
when none is in flight, and the cluster counts as gone — for good — when this worker's own
node is dead, when the cluster refuses, or when it leaves a question unanswered for
:data:`PROBE_PATIENCE` seconds. The same answer says the cluster's free CPUs, read by the
executor's capacity.
"""

from __future__ import annotations

import threading
import time
from typing import Any

#: How long the cluster may leave the worker's probe unanswered before it counts as gone
#: (Ray itself aborts a driver whose GCS is away for 60 s).
PROBE_PATIENCE = 30.0


class RayHealth:
    """The cluster at ``address`` as this worker (whose raylet is ``node_id``) last saw it."""

    def __init__(self, ray: Any, address: str, node_id: str) -> None:
        self.ray = ray
        self.address = address
        #: The node of this driver's raylet: when it dies, so does every way to the cluster.
        self.node_id = node_id
        self._lock = threading.Lock()
        self.gone: str | None = None  # why the cluster can be used no more
        self._probe_since: float | None = None  # when the probe in flight was sent
        self.free_cpus: int | None = None  # the cluster's, at the last probe

    def broken(self) -> str | None:
        """Why the cluster is gone for this worker, else None (a probe sent if none is in
        flight; one in flight past :data:`PROBE_PATIENCE` makes it gone)."""
        asked = self.ask()
        if asked is not None and time.monotonic() - asked > PROBE_PATIENCE:
            self.lose(f"it has not answered for {PROBE_PATIENCE:g} s")
        return self.gone

    def ask(self) -> float | None:
        """Send a probe unless one is in flight; when that one was sent, else None."""
        with self._lock:
            asked = self._probe_since
            if asked is None and self.gone is None:
                self._probe_since = time.monotonic()
                threading.Thread(target=self._probe, name="titan-ray-probe",
                                 daemon=True).start()
        return asked

    def _probe(self) -> None:
        try:
            alive = any(n.get("NodeID") == self.node_id and n.get("Alive")
                        for n in self.ray.nodes())
            free = int(float(self.ray.available_resources().get("CPU", 0.0)))
        except Exception as exc:  # the GCS refuses: Ray gives up on it too
            self.lose(f"it does not answer: {type(exc).__name__}: {exc}")
        else:
            if not alive:
                self.lose(f"this worker's Ray node {self.node_id[:12]} is dead")
            with self._lock:
                self.free_cpus = free
        finally:
            with self._lock:
                self._probe_since = None

    def lose(self, why: str) -> None:
        """The cluster is gone for this worker, for ``why`` (the first reason stays)."""
        if self.gone is None:
            self.gone = (f"the Ray cluster at {self.address} is gone for this worker ({why}"
                         "); its jobs start again elsewhere, spending no retry; start the "
                         "worker again once the cluster is back")
