"""Under `--run-as USER` every job runs as the same uid: one job must still not take another's
job token. A job forked from the zygote is not dumpable (the zygote's child changed its uid),
but one the worker starts by exec — a fresh interpreter (`runner="subprocess"`), a shell script,
a binary — is an ordinary process of USER, whose `/proc/<pid>/environ` holds its job token and
whose memory a process of the same uid may read. Each job of a `--run-as` worker is put in a
Landlock domain of its own, whose ptrace rule refuses those to every other job.

The attacker is a job of the same worker, hence the same uid: it reads every other process of
its uid it finds — environment and memory — while the victims run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import nobody_python
from tests.integration.harness import Cluster
from titan import TitanJob
from titan.worker import landlock

ATTACKER = r'''
import json, os, re, sys, time
from titan_sdk import TitanClient

TOKEN = re.compile(rb"tj\.[A-Za-z0-9_.-]{20,}")
client = TitanClient()
dag = os.environ["TITAN_DAG"]
for victim in sys.argv[1:]:  # wait until both victims run
    while client.get_job_status(f"{dag}/{victim}") != "RUNNING":
        time.sleep(0.05)
mine, me, uid = os.environ["TITAN_TOKEN"], os.getpid(), os.getuid()
found, looked, refused = set(), set(), []
deadline = time.monotonic() + 5
while time.monotonic() < deadline and not found:
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        if pid == me:
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if not any(v.encode() in cmdline for v in ("victim.py", "victim.sh")):
            continue
        looked.add(pid)
        try:
            found.update(m.decode() for m in TOKEN.findall(open(f"/proc/{pid}/environ", "rb").read()))
        except OSError as exc:
            refused.append(f"environ {exc.strerror}")
        try:
            with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb") as mem:
                for line in maps:
                    span, perms = line.split()[:2]
                    if "rw" not in perms:
                        continue
                    lo, hi = (int(x, 16) for x in span.split("-"))
                    try:
                        mem.seek(lo)
                        found.update(m.decode() for m in TOKEN.findall(mem.read(min(hi - lo, 64 << 20))))
                    except OSError:
                        pass
        except OSError as exc:
            refused.append(f"mem {exc.strerror}")
    time.sleep(0.1)
worked = 0
for stolen in found - {mine}:  # as an attacker would: is it a live job token?
    try:
        TitanClient(token=stolen).store_get("victim/py")
        worked += 1
    except Exception:
        pass
client.store_put("hunt/done", "1")
print("HUNT " + json.dumps({"looked": len(looked), "found": len(found - {mine}),
                            "worked": worked, "refused": sorted(set(refused))}))
'''

VICTIM_PY = """
import os
from titan_sdk import TitanClient
client = TitanClient()
client.store_put("victim/py", str(os.getpid()))  # its token works, however it got it
client.store_wait("hunt/done", timeout=60)
print("VICTIM DONE")
"""

VICTIM_SH = "#!/bin/bash\nfor i in $(seq 300); do sleep 0.1; done\necho VICTIM SH DONE\n"


@pytest.fixture
def world_readable_root() -> Iterator[Path]:
    """A directory another user can enter (pytest's tmp is root's alone), for --run-as."""
    root = Path(tempfile.mkdtemp(prefix="titan-run-as-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _completed(c: Cluster, dag: str, job_id: str, name: str, code: str) -> str:
    """Run ``code`` as script ``name``, the one job ``job_id`` of DAG ``dag``, to completion;
    the DAG's reference."""
    client = c.client()
    ref = client.submit_dag(dag, [TitanJob(job_id=job_id, filename=c.script(name, code))])["ref"]
    assert client.wait(f"{ref}/{job_id}", timeout=60)["state"] == "COMPLETED"
    return str(ref)


def _python_for_nobody() -> str:
    """An interpreter uid 65534 can run, Titan importable (nobody_python.py); else skip."""
    python = nobody_python.interpreter()
    if python is None:
        pytest.skip("no interpreter nobody can run with Titan here: run this test with an "
                    "interpreter and Titan installed where other users may read them")
    return python


@pytest.mark.skipif(os.geteuid() != 0, reason="--run-as needs a root worker")
@pytest.mark.skipif(landlock.abi_version() < 1, reason="this kernel has no Landlock")
def test_a_job_cannot_read_the_token_of_another_job_of_its_run_as_user(
        world_readable_root: Path) -> None:
    python = _python_for_nobody()
    c = Cluster(world_readable_root)
    try:
        c.start_master()
        c.add_worker(extra=["--run-as", "nobody"], slots=3, python=python)
        client = c.client()
        dag = client.submit_dag("steal", [
            TitanJob(job_id="py", filename=c.script("victim.py", VICTIM_PY),
                     runner="subprocess", timeout=90),
            TitanJob(job_id="sh", filename=c.script("victim.sh", VICTIM_SH), timeout=90),
            TitanJob(job_id="attacker", filename=c.script("attacker.py", ATTACKER),
                     args=["py", "sh"], timeout=90),
        ])
        ref = dag["ref"]
        attacker = client.wait(f"{ref}/attacker", timeout=120)
        logs = client.fetch_logs(f"{ref}/attacker")
        assert attacker["state"] == "COMPLETED", logs[-3000:]
        result = json.loads(next(x for x in logs.splitlines() if x.startswith("HUNT "))[5:])
        assert result["looked"] >= 2, result  # it found both victims' processes
        assert result["found"] == 0 and result["worked"] == 0, result  # ... and no token
        assert any("environ" in r for r in result["refused"]), result
        py = client.wait(f"{ref}/py", timeout=60)
        assert py["state"] == "COMPLETED", client.fetch_logs(f"{ref}/py")[-3000:]
        assert "VICTIM DONE" in client.fetch_logs(f"{ref}/py")
    finally:
        c.stop()


PLANTER = r'''
import os
# A job of the same user leaves a module in the shared folder (its cwd), under a name another
# job imports if it can (an optional dependency), and replaces a helper the worker wrote there.
with open("titan_optional_speedup.py", "w") as fh:
    fh.write("import os\nprint('PLANTED CODE RAN with', 'TITAN_TOKEN' in os.environ)\n")
os.replace("planted_helper.py", "planted_helper.py.bak") if os.path.exists("planted_helper.py") else None
with open("planted_helper.py", "w") as fh:
    fh.write("print('PLANTED HELPER RAN')\nVALUE = 'planted'\n")
print("PLANTED")
'''

HELPER = "VALUE = 'the worker wrote me'\n"

VICTIM_IMPORTS = r'''
try:
    import titan_optional_speedup  # noqa: F401
    print("OPTIONAL: imported")
except ImportError:
    print("OPTIONAL: not available")
try:
    import planted_helper
    print("HELPER:", planted_helper.VALUE)
except ImportError:
    print("HELPER: refused")
'''


@pytest.mark.skipif(os.geteuid() != 0, reason="--run-as needs a root worker")
def test_a_job_cannot_plant_a_module_another_job_of_its_run_as_user_imports(
        world_readable_root: Path) -> None:
    python = _python_for_nobody()
    c = Cluster(world_readable_root)
    try:
        c.start_master()
        c.add_worker(extra=["--run-as", "nobody"], slots=1, python=python)
        client = c.client()
        # The worker writes the helper into its shared folder (a job of another DAG uses it).
        _completed(c, "helper", "h", "planted_helper.py", HELPER)
        before = _completed(c, "before", "v", "victim_imports.py", VICTIM_IMPORTS)
        # what the worker wrote there still imports, as without --run-as
        assert "HELPER: the worker wrote me" in client.fetch_logs(f"{before}/v")
        plant = _completed(c, "plant", "p", "planter.py", PLANTER)
        assert "PLANTED" in client.fetch_logs(f"{plant}/p")
        for runner in ("auto", "subprocess"):  # forked from the zygote, and a fresh interpreter
            victim = client.submit_dag(f"victim-{runner}", [TitanJob(
                job_id="v", filename=c.script("victim_imports.py", VICTIM_IMPORTS),
                runner=runner)])
            ref = f"{victim['ref']}/v"
            job = client.wait(ref, timeout=60)
            logs = client.fetch_logs(ref)
            assert job["state"] == "COMPLETED", logs[-3000:]
            assert "PLANTED" not in logs, (runner, logs[-3000:])
            assert "OPTIONAL: not available" in logs, (runner, logs[-3000:])
            assert "HELPER: refused" in logs, (runner, logs[-3000:])
            assert "written by a job" in logs, (runner, logs[-3000:])  # and it says why
    finally:
        c.stop()


SIGNAL_VICTIM = r'''
import os
from titan_sdk import TitanClient
client = TitanClient()
client.store_put(f"victim/{os.environ['TITAN_JOB_ID']}", str(os.getpid()))
client.store_wait("attack/done", timeout=60)
print("VICTIM ALIVE")
'''

KILLER = r'''
import json, os, signal, subprocess, sys
from titan_sdk import TitanClient
client = TitanClient()
# What it started itself it may still signal (its children are in its domain).
child = subprocess.Popen(["sleep", "60"])
child.send_signal(signal.SIGTERM)
own = child.wait()
tried = {}
for victim in sys.argv[1:]:
    pid = int(client.store_wait(f"victim/{victim}", timeout=60))
    for how in ("kill", "killpg"):
        try:
            if how == "kill":
                os.kill(pid, signal.SIGKILL)
            else:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            tried[f"{victim} {how}"] = "sent"
        except OSError as exc:
            tried[f"{victim} {how}"] = exc.strerror
client.store_put("attack/done", "1")
print("ATTACK " + json.dumps({"own_child": own, "tried": tried}))
'''

SLEEPER_SH = "#!/bin/bash\nsleep 120\n"
SLEEPER_PY = "import time\ntime.sleep(120)\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="--run-as needs a root worker")
@pytest.mark.skipif(landlock.abi_version() < 6,
                    reason="Landlock's signal scope needs ABI 6 (Linux 6.12)")
def test_a_job_cannot_kill_another_job_of_its_run_as_user(world_readable_root: Path) -> None:
    """One uid for every job: `kill -9` of another job's pid worked, forked or exec'd. The
    worker must still cancel and time out its jobs, and a job signal its own children."""
    python = _python_for_nobody()
    c = Cluster(world_readable_root)
    try:
        c.start_master()
        c.add_worker(extra=["--run-as", "nobody"], slots=5, python=python)
        client = c.client()
        dag = client.submit_dag("kill", [
            TitanJob(job_id="forked", filename=c.script("signal_victim.py", SIGNAL_VICTIM),
                     timeout=90),
            TitanJob(job_id="fresh", filename=c.script("signal_victim.py", SIGNAL_VICTIM),
                     runner="subprocess", timeout=90),
            TitanJob(job_id="killer", filename=c.script("killer.py", KILLER),
                     args=["forked", "fresh"], timeout=90),
            TitanJob(job_id="cancelled", filename=c.script("sleeper.sh", SLEEPER_SH),
                     timeout=90),
            TitanJob(job_id="late", filename=c.script("sleeper.py", SLEEPER_PY),
                     runner="subprocess", timeout=3),
        ])
        ref = dag["ref"]
        killer = client.wait(f"{ref}/killer", timeout=120)
        logs = client.fetch_logs(f"{ref}/killer")
        assert killer["state"] == "COMPLETED", logs[-3000:]
        result = json.loads(next(x for x in logs.splitlines() if x.startswith("ATTACK "))[7:])
        assert result["own_child"] == -15, result  # its own child it may signal
        assert set(result["tried"].values()) == {"Operation not permitted"}, result
        for victim in ("forked", "fresh"):
            job = client.wait(f"{ref}/{victim}", timeout=60)
            victim_logs = client.fetch_logs(f"{ref}/{victim}")
            assert job["state"] == "COMPLETED", victim_logs[-3000:]
            assert "VICTIM ALIVE" in victim_logs
        # The worker, in no domain, still ends its jobs: a cancel, a timeout.
        while client.get_job_status(f"{ref}/cancelled") != "RUNNING":
            time.sleep(0.05)
        client.cancel(f"{ref}/cancelled")
        assert client.wait(f"{ref}/cancelled", timeout=30)["state"] == "CANCELLED"
        assert client.wait(f"{ref}/late", timeout=30)["state"] == "TIMED_OUT"
        assert not _nobody_runs("sleep 120") and not _nobody_runs("sleeper.py")
    finally:
        c.stop()


def _nobody_runs(needle: str, within: float = 10.0) -> bool:
    """Whether a process of nobody's with ``needle`` in its command line is still there after
    ``within`` seconds (a cancel must end the whole job, not just its first process)."""
    deadline = time.monotonic() + within
    while True:
        running = False
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and entry.stat().st_uid == 65534 and \
                        needle.encode() in (entry / "cmdline").read_bytes().replace(b"\0", b" "):
                    running = True
            except OSError:
                continue
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.2)


SPAWNER = r'''
import subprocess, sys
# Interpreters of its own, in the shared folder it starts in: -c and -m put it first.
for how in (["-c", "import planted_helper; print('SPAWNED HELPER:', planted_helper.VALUE)"],
            ["-c", "import titan_optional_speedup"], ["-m", "titan_optional_speedup"]):
    code = subprocess.run([sys.executable, *how]).returncode
    print("SPAWNED", how[0], "rc", code, flush=True)
'''

SPAWNER_SH = """#!/bin/bash
"$1" -c 'import titan_optional_speedup'; echo "SH -c rc $?"
"$1" -m planted_helper; echo "SH -m rc $?"
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="--run-as needs a root worker")
def test_a_python_a_job_starts_imports_no_module_another_job_planted_in_shared(
        world_readable_root: Path) -> None:
    """`python -c`/`-m` started by a job (its cwd: the shared folder) put that folder first on
    their import path, out of reach of the plain script's rule: a module another job of the
    same user left there ran, with this job's token."""
    python = _python_for_nobody()
    c = Cluster(world_readable_root)
    try:
        c.start_master()
        c.add_worker(extra=["--run-as", "nobody"], slots=1, python=python)
        client = c.client()
        _completed(c, "helper", "h", "planted_helper.py", HELPER)
        before = _completed(c, "before", "s", "spawner.py", SPAWNER)
        logs = client.fetch_logs(f"{before}/s")
        # what the worker wrote there still imports in the job's own interpreters
        assert "SPAWNED HELPER: the worker wrote me" in logs, logs[-3000:]
        _completed(c, "plant", "p", "planter.py", PLANTER)
        victims = client.submit_dag("victims", [
            TitanJob(job_id="forked", filename=c.script("spawner.py", SPAWNER)),
            TitanJob(job_id="fresh", filename=c.script("spawner.py", SPAWNER),
                     runner="subprocess"),
            # its own PYTHONPATH does not take the worker's rule away
            TitanJob(job_id="own-path", filename=c.script("spawner.py", SPAWNER),
                     env={"PYTHONPATH": str(world_readable_root / "nowhere")}),
            TitanJob(job_id="shell", filename=c.script("spawner.sh", SPAWNER_SH),
                     args=[python]),
        ])
        for job_id in ("forked", "fresh", "own-path", "shell"):
            ref = f"{victims['ref']}/{job_id}"
            job = client.wait(ref, timeout=60)
            logs = client.fetch_logs(ref)
            assert job["state"] == "COMPLETED", (job_id, logs[-3000:])
            assert "PLANTED" not in logs, (job_id, logs[-3000:])
            assert "written by a job" in logs, (job_id, logs[-3000:])  # and it says why
            if job_id == "shell":
                assert "SH -c rc 1" in logs and "SH -m rc 1" in logs, logs[-3000:]
            else:
                assert logs.count("rc 1") == 3, (job_id, logs[-3000:])
    finally:
        c.stop()
