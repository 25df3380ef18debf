"""What one forked job costs, child by child: the zygote's fork path without the worker.

Each zygote (lean and full, preloaded as the worker starts them) forks ``--forks`` children in
this process, one after the other, in three ways: a child that leaves at once (the floor:
fork, the interpreter's after-fork work, exit), a child that runs the trivial job the way a
job runs (``titan.worker.child.run_job``) from a blob the zygote has not seen (it reads and
compiles it), and one that runs it compiled ahead by the zygote, as every job after the first
of a script does (``titan.worker.script_cache``). Printed per child: copy-on-write page faults and CPU
(``getrusage`` of the reaped children), the parent's (the zygote's) CPU for the fork, and the
wall time. Each figure is the median of ``--rounds`` rounds, the two zygotes alternating, so a
change to the child's path (what the zygote preloads, what a child runs) is measured against
the other zygote in the same run rather than against a number from another day. Page faults
are the steady figure on a noisy machine; CPU moves with the machine.

    .venv/bin/python bench/fork_cost.py [--forks 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

SCRIPT = str(Path(__file__).resolve().parent / "trivial_job.py")


def measure(lean: bool, mode: str, forks: int) -> dict[str, float]:
    """Fork ``forks`` children from a zygote preloaded here; per-child figures."""
    import hashlib
    import tempfile

    from titan.worker import child, script_cache, zygote

    zygote._become_subreaper()  # as the zygote's main() does: its children find ctypes loaded
    zygote.preload(lean=lean)
    assert not lean or "threading" not in sys.modules, "the harness loaded threading"
    # As a worker sends it: the script's source is a blob of its cache, named by its hash,
    # which the zygote compiled when the first job ran it (titan.worker.script_cache).
    source = Path(SCRIPT).read_bytes()
    blob = Path(tempfile.mkdtemp()) / hashlib.sha256(source).hexdigest()
    blob.write_bytes(source)
    request = {"rid": 1, "argv": [SCRIPT], "cwd": "/tmp", "env_unset": [], "env_set": {},
               "script": SCRIPT, "source": str(blob), "sys_path": []}
    if mode == "cached":
        assert script_cache.remember(request)

    def usage(who: int) -> tuple[int, float]:
        r = resource.getrusage(who)
        return r.ru_minflt, r.ru_utime + r.ru_stime

    kids0, me0, t0 = usage(resource.RUSAGE_CHILDREN), usage(resource.RUSAGE_SELF), \
        time.perf_counter()
    for _ in range(forks):
        r, w = os.pipe()
        held, _wanted = script_cache.take(request)  # as the zygote does, before the fork
        pid = os.fork()
        if pid == 0:
            if mode == "exit":
                os._exit(0)
            child.run_job(request, w, w, None, held=held)  # never returns
        os.close(w)
        while os.read(r, 65536):
            pass
        os.close(r)
        _pid, status = os.waitpid(pid, 0)
        assert status == 0, f"the child failed ({status}): the figures would be an error's"
    wall = time.perf_counter() - t0
    kids1, me1 = usage(resource.RUSAGE_CHILDREN), usage(resource.RUSAGE_SELF)
    return {"faults": (kids1[0] - kids0[0]) / forks, "child_ms": (kids1[1] - kids0[1]) * 1e3 / forks,
            "zygote_ms": (me1[1] - me0[1]) * 1e3 / forks, "wall_ms": wall * 1e3 / forks}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forks", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--one", nargs=2, metavar=("ZYGOTE", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # a fresh interpreter per measurement: each zygote preloads from scratch
        figures = measure(args.one[0] == "lean", args.one[1], args.forks)
        print(" ".join(f"{k}={v:.4f}" for k, v in figures.items()))
        return 0
    # Only here, never in a measuring process: subprocess imports threading, and a zygote
    # holding threading pays its after-fork hook in every child (what the lean one avoids).
    import compileall
    import subprocess

    import titan

    # As installed, Titan's modules load from .pyc files; a checkout run with
    # PYTHONDONTWRITEBYTECODE compiles them from source, which warmed the compiler in the
    # zygote and hid ~140 faults a child paid elsewhere (zygote.preload warms it now).
    compileall.compile_dir(os.path.dirname(titan.__file__), quiet=1)

    rounds: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for kind in ("lean", "full"):
            for mode in ("exit", "job", "cached"):
                out = subprocess.run([sys.executable, __file__, "--forks", str(args.forks),
                                      "--one", kind, mode], capture_output=True, text=True,
                                     check=True).stdout.split()
                rounds.setdefault((kind, mode), []).append(
                    {k: float(v) for k, v in (x.split("=") for x in out)})
    print(f"fork cost per child: {args.forks} forks, medians of {args.rounds} rounds, "
          f"{os.cpu_count()} CPUs")
    print(f"  {'zygote':<6} {'child':<26} {'COW faults':>10} {'child CPU':>11} "
          f"{'zygote CPU':>11} {'wall':>9}")
    for (kind, mode), runs in rounds.items():
        m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        what = {"exit": "leaves at once (the floor)", "job": "runs the trivial job",
                "cached": "runs it, compiled ahead"}[mode]
        print(f"  {kind:<6} {what:<26} {m['faults']:>10.0f} {m['child_ms']:>8.3f} ms "
              f"{m['zygote_ms']:>8.3f} ms {m['wall_ms']:>6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
