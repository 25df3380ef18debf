"""Clock and random values recorded: ``trace.now/uuid/random``, the same again in a replay.

Each is an action of its own (channel ``clock`` or ``random``) with no inputs: a replay
answers it from the recording, and makes one the recording lacks live, since a clock reading
or a random draw has no side effect to hold back.
"""

from __future__ import annotations

import random as _random
import time
import uuid as _uuid
from collections.abc import Callable
from typing import Any

from titan.trace import context, forks, replay
from titan.trace.emit import emit


def _ambient(channel: str, name: str, make: Callable[[], Any]) -> Any:
    # Outside any run (an orchestrator making up its run id before its first stage) nothing
    # is recorded, and a replayed orchestrator draws afresh there too (context.current_run).
    run = context.current_run()
    if run is None:
        return make()
    session = replay.active()
    if session is None:
        value = make()
        emit(run, channel=channel, name=name, inputs={}, outputs=value,
             started_at=time.time(), duration_ns=0)
        return value
    actor = context.current_actor(run)
    d = session.decide(run, actor, channel, name, {})
    if d.recorded is not None:
        actor = d.recorded.actor
    if d.status == "stopped":
        exc = session.refusal(d, channel, name, actor)
        emit(run, channel=channel, name=name, inputs={}, outputs=None, started_at=time.time(),
             duration_ns=0, outcome="error", error=exc, actor=actor, ordinal=d.ordinal,
             replay_status=d.status)
        forks.stopped(exc)
        raise exc
    # Clock and random values have no side effects: one the recording lacks is made live.
    value = d.outputs if d.serves else make()
    emit(run, channel=channel, name=name, inputs={}, outputs=value, started_at=time.time(),
         duration_ns=0, outcome="replayed" if d.serves else "success", actor=actor,
         ordinal=d.ordinal, replay_status=d.status if d.status != "refused" else "live",
         cost_usd=0.0 if d.serves else None)
    return value


def now() -> float:
    """``time.time()``, recorded (channel ``clock``) so a replay gets the same value."""
    return float(_ambient("clock", "now", time.time))


def uuid() -> str:
    """A random UUID4 string, recorded (channel ``random``) so a replay gets the same one."""
    return str(_ambient("random", "uuid", lambda: str(_uuid.uuid4())))


def random() -> float:
    """``random.random()``, recorded (channel ``random``) so a replay gets the same value."""
    return float(_ambient("random", "random", _random.random))
