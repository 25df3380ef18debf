"""Job scripts and process checks shared by the integration tests: a job that blocks on a
store key, a job that leaves a grandchild behind, and whether a pid still runs."""

from __future__ import annotations

import os
import time

#: Writes store key "<argv[1]>/started", then blocks until the store key argv[1] is written.
#: It polls rather than waits on the master (``store_wait``): a job parked in a wait lends
#: its slot to another job (master/scheduling/lending.py), and the tests that use this job
#: need it to hold its slot, as a job that works does.
BLOCKER = """
    import sys, time
    from titan import TitanClient
    client = TitanClient()
    key = sys.argv[1]
    client.store_put(key + "/started", "1")
    deadline = time.monotonic() + 120
    while client.store_get(key) is None and time.monotonic() < deadline:
        time.sleep(0.05)
"""

#: Starts a grandchild that sleeps, writes its pid to argv[1], says so in the store, sleeps.
SPAWNER = """
    import subprocess, sys, time
    from titan import TitanClient
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(child.pid))
    import os
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    TitanClient().store_put(sys.argv[2], str(child.pid))
    time.sleep(120)
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie waiting to be reaped counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return True


def wait_dead(pid: int, timeout: float = 15) -> bool:
    """Whether ``pid`` is gone within ``timeout`` seconds (a kill takes a moment to land)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (Linux ``/proc``)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    return out
