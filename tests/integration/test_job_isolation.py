"""A job cannot become admin (issue 15 item 1): its workspace is outside the data dir, its
environment holds only its own job token, and with isolation on (`--sandbox`, `--run-as`) a
job that searches everything it can reach for Titan credentials, and tries each one against
`POST /tokens`, finds none that works.

The hunter is the attacker's job, submitted with an operator token: it walks the whole
filesystem it can see, reads every process's environment and command line it may, and tries
every token-looking string and every credential file it finds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration import nobody_python
from tests.integration.harness import Cluster
from titan import TitanJob
from titan.worker import landlock

HUNTER = r'''
import json, os, re, stat, sys, time, urllib.error, urllib.request

TOKEN = re.compile(rb"(tt_[A-Za-z0-9_-]{20,}|tw\.[A-Za-z0-9_-]+\.[A-Za-z0-9_.-]+\.[0-9a-f]{40}|tj\.[A-Za-z0-9_.-]+)")
NAMES = {"admin.token", "worker.token", "master.json", "titan.db", "titan.db-wal", "config.json"}
SYSTEM = ("/usr/", "/lib", "/bin/", "/sbin/", "/proc/", "/sys/", "/dev/", "/boot/")
found, files, seen_files, where = set(), [], 0, {}
deadline = time.monotonic() + 240


def scan(path, data):
    for m in TOKEN.finditer(data):
        found.add(m.group(1).decode())
        where.setdefault(m.group(1).decode()[:8], path)


def read(path, limit):
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


# 1. Everything the job's filesystem view holds: from / and, where a directory cannot be
# listed, from every place worth guessing (the usual top-level directories, the ancestors of
# its working directory, the paths named on its command line: the attacker knows the layout).
roots = ["/"] + ["/" + n for n in ("root", "home", "tmp", "var", "etc", "opt", "srv", "mnt",
                                   "work", "run", "usr", "data")]
here = os.getcwd()
roots += [here, *sys.argv[1:]]
parent = here
while parent != "/":
    parent = os.path.dirname(parent)
    roots.append(parent)
visited = set()


def walk():
    for root in roots:
        for top, dirs, names in os.walk(root, onerror=lambda e: None):
            if top in visited or top in ("/proc", "/sys", "/dev"):
                dirs[:] = []
                continue
            visited.add(top)
            yield top, dirs, names


for top, dirs, names in walk():
    if time.monotonic() > deadline:
        print("HUNT TRUNCATED"); break
    for name in names:
        path = os.path.join(top, name)
        seen_files += 1
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        credential_name = name in NAMES or name.endswith((".token", ".env"))
        if credential_name:
            data = read(path, 1 << 20)
            # (config.json: only Titan's, the one that keeps a token per master)
            if data is not None and (name != "config.json" or b'"masters"' in data):
                files.append(path)
                scan(path, data)
        elif st.st_size <= 65536 and not path.startswith(SYSTEM) and not name.endswith(
                (".py", ".pyc", ".so", ".pyi", ".h", ".html", ".js", ".css", ".svg")):
            data = read(path, 65536)
            if data is not None:
                scan(path, data)

# 2. Every process's environment and command line it may read (the worker's, the master's).
try:
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
except OSError:  # not listable: guess, as pids are small and the worker's precede the job's
    pids = [str(p) for p in range(1, os.getpid() + 5000)]
for pid in pids:
    if True:
        for what in ("environ", "cmdline"):
            data = read(f"/proc/{pid}/{what}", 1 << 20)
            if data:
                scan(f"/proc/{pid}/{what}", data)

# 3. Its own environment (its job token is its own: it may not mint tokens).
for value in os.environ.values():
    scan("env", value.encode())

# 4. Try each against POST /tokens, as an attacker would.
minted = []
url = os.environ["TITAN_MASTER_URL"] + "/api/v1/tokens"
for token in sorted(found):
    req = urllib.request.Request(url, method="POST", data=b'{"role": "admin", "name": "pwned"}',
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            minted.append({"token": token[:12], "status": r.status})
    except urllib.error.HTTPError as exc:
        pass
    except OSError:
        pass
print("HUNT " + json.dumps({"files_seen": seen_files, "credential_files": files,
                            "tokens": len(found), "where": where,
                            "minted": minted}))
'''


def hunt(c: Cluster) -> dict[str, Any]:
    """Submit the hunter with an operator token and return what it found. It is told where
    the data dir and the worker's directory are (an attacker can guess them)."""
    admin = c.client()
    operator = c.client(token=admin.create_token("operator", "tenant")["token"])
    dag = operator.submit_dag("hunt", [TitanJob(job_id="hunt", filename=c.script("hunt.py", HUNTER),
                                                args=[str(c.data), str(c.root)], timeout=300)])
    job = operator.wait(f"{dag['ref']}/hunt", timeout=330)
    logs = operator.fetch_logs(f"{dag['ref']}/hunt")
    assert job["state"] == "COMPLETED", logs[-3000:]
    assert "HUNT TRUNCATED" not in logs
    line = next(x for x in logs.splitlines() if x.startswith("HUNT "))
    result: dict[str, Any] = json.loads(line[5:])
    assert result["files_seen"] > 100, result  # it did look around
    return result


@pytest.fixture
def world_readable_root() -> Iterator[Path]:
    """A directory another user can enter (pytest's tmp is root's alone), for --run-as."""
    root = Path(tempfile.mkdtemp(prefix="titan-isolation-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_titan_up_keeps_jobs_out_of_the_data_dir(tmp_path: Path) -> None:
    """Without any opt-in isolation: the workspace is not inside the data dir (no relative
    path reaches admin.token), the data dir is private, and the job's environment holds
    nothing but its own job token."""
    c = Cluster(tmp_path, env={"GITHUB_TOKEN": "ghp_not_for_jobs", "PGPASSWORD": "hunter2"})
    try:
        c.up(slots=1)
        probe = c.script("probe.py", """
            import json, os
            from pathlib import Path
            up = [str(p) for p in (Path.cwd() / "../../admin.token", Path.cwd() / "../admin.token")
                  if p.exists()]
            kinds = {k: next((p for p in ("tj.", "tt_", "tw.") if v.startswith(p)), v)
                     for k, v in os.environ.items()}
            print("PROBE " + json.dumps({"cwd": os.getcwd(), "up": up, "env": kinds}))
            print("ENV", dict(os.environ))  # the usual debugging line: its token is not kept
        """)
        client = c.client()
        dag = client.submit_dag("probe", [TitanJob(job_id="p", filename=probe)])
        assert client.wait(f"{dag['ref']}/p", timeout=60)["state"] == "COMPLETED"
        line = next(x for x in client.fetch_logs(f"{dag['ref']}/p").splitlines()
                    if x.startswith("PROBE "))
        seen = json.loads(line[6:])
        data = c.data.resolve()
        assert not Path(seen["cwd"]).resolve().is_relative_to(data), seen["cwd"]
        assert seen["up"] == []
        env = seen["env"]
        assert env["TITAN_TOKEN"] == "tj."  # its own job token, nothing else
        assert "GITHUB_TOKEN" not in env and "PGPASSWORD" not in env
        assert "TITAN_DATA_DIR" not in env
        assert not any(v in ("tt_", "tw.") for v in env.values())
        # A viewer reads job logs: the token the job printed is not in them.
        logs = client.fetch_logs(f"{dag['ref']}/p")
        assert "'TITAN_TOKEN': '[titan token redacted]'" in logs and "'tj." not in logs
        # The data dir and everything in it: the owner's alone.
        assert data.stat().st_mode & 0o077 == 0
        for path in data.rglob("*"):
            if path.is_file():
                assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))
    finally:
        c.stop()


@pytest.mark.skipif(landlock.abi_version() < 1, reason="this kernel has no Landlock")
def test_a_sandboxed_job_finds_no_credential(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    try:
        c.start_master()
        # The worker holds a worker token in its environment and runs from the directory that
        # holds the master's data dir: neither may reach its jobs.
        c.add_worker(extra=["--sandbox"], slots=1)
        result = hunt(c)
        assert result["minted"] == [] and result["credential_files"] == [], result
        assert result["tokens"] <= 1, result  # at most its own job token
    finally:
        c.stop()


@pytest.mark.skipif(landlock.abi_version() < 1, reason="this kernel has no Landlock")
def test_titan_up_sandbox_hides_the_data_dir(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    try:
        c.master = c._spawn(["up", *c._master_args(), "--slots", "1", "--sandbox"],
                            "master.log")
        c.wait_healthy()
        c.wait_workers(1)
        result = hunt(c)
        assert result["minted"] == [] and result["credential_files"] == [], result
    finally:
        c.stop()


READS = """
import sys
try:
    open(sys.argv[1]).read()
    print("read")
except PermissionError:
    print("refused")
"""


@pytest.mark.skipif(landlock.abi_version() < 1, reason="this kernel has no Landlock")
def test_titan_sandbox_is_a_switch_and_refuses_other_values(tmp_path: Path) -> None:
    # Every value but "" and "0" turned the sandbox on: TITAN_SANDBOX=false did.
    c = Cluster(tmp_path)
    try:
        c.start_master()
        token = (c.data / "worker.token").read_text().strip()
        out = subprocess.run(
            [sys.executable, "-m", "titan", "worker", "--master", c.url,
             "--workdir", str(tmp_path)],
            env={**c.env, "TITAN_TOKEN": token, "TITAN_SANDBOX": "maybe"}, cwd=tmp_path,
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 1, out.stdout + out.stderr
        assert out.stderr == ("error: TITAN_SANDBOX must be one of 1, true, yes, on (on) or "
                              "0, false, no, off (off) (got 'maybe')\n"), out.stderr
        assert c.live_workers() == []
        c.add_worker("GENERAL,OFF", slots=1, name="off", env={"TITAN_SANDBOX": "false"})
        c.add_worker("GENERAL,ON", slots=1, name="on", env={"TITAN_SANDBOX": "Yes"})
        script = c.script("reads.py", READS)
        secret = str(c.data / "worker.token")  # the data dir: hidden from a sandboxed job
        client = c.client()
        client.submit_dag("switch", [
            TitanJob(job_id=f"{where}", filename=script, args=[secret], requirement=where.upper())
            for where in ("off", "on")])
        assert client.wait("switch", timeout=60)["status"] == "COMPLETED"
        assert client.fetch_logs("switch/off").split() == ["read"]
        assert client.fetch_logs("switch/on").split() == ["refused"]
    finally:
        c.stop()


ESCAPES = r'''
import json, os, signal, sys
master = int(sys.argv[1])
seen = {}
try:
    os.kill(master, 0)  # signal 0: "may I signal it?", nothing sent
    seen["signal"] = "allowed"
except PermissionError:
    seen["signal"] = "refused"
try:
    os.listdir("/dev/pts")
    seen["pts"] = "listed"
except PermissionError:
    seen["pts"] = "refused"
with open("/dev/null", "w") as f:
    f.write("devices a program needs still work")
seen["urandom"] = len(os.urandom(8))
print(json.dumps(seen))
'''


@pytest.mark.skipif(landlock.abi_version() < 6,
                    reason="signal scoping needs Landlock ABI 6 (Linux 6.12)")
def test_a_sandboxed_job_cannot_signal_outside_nor_read_terminals(tmp_path: Path) -> None:
    # A sandboxed job killed the master (os.kill as the same user) and read the keystrokes of
    # the terminal `titan up` ran in (/dev/pts): Landlock's signal scope and a /dev of the
    # devices programs need only refuse both.
    c = Cluster(tmp_path)
    try:
        c.start_master()
        c.add_worker(extra=["--sandbox"], slots=1)
        script = c.script("escapes.py", ESCAPES)
        client = c.client()
        client.submit_dag("escapes", [TitanJob(job_id="e", filename=script,
                                               args=[str(c.master.pid)])])
        job = client.wait("escapes/e", timeout=120)
        log = client.fetch_logs("escapes/e")
        assert job["state"] == "COMPLETED", log
        assert json.loads(log.strip().splitlines()[-1]) == {
            "signal": "refused", "pts": "refused", "urandom": 8}
        assert c.master.poll() is None
    finally:
        c.stop()


def _nobody_can_run_python() -> str | None:
    """Why `--run-as nobody` cannot work on this machine (None when it can)."""
    from titan.worker.isolation import _python_dirs, _reachable

    for path in _python_dirs():
        if _reachable(path, 65534, (65534,)) is not None:
            return f"nobody cannot read {path} (the interpreter lives in a private home)"
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="--run-as needs a root worker")
def test_a_job_run_as_another_user_finds_no_credential(world_readable_root: Path) -> None:
    c = Cluster(world_readable_root)
    try:
        c.start_master()
        why_not = _nobody_can_run_python()
        python = None
        if why_not is not None:
            # The worker says so and does not start, rather than fail every job's imports.
            proc = c.add_worker(extra=["--run-as", "nobody"], slots=1, wait=False)
            assert proc.wait(timeout=60) == 2
            assert "cannot read the Python installation" in c.log("worker-0.log")
            # Then a worker on an interpreter nobody can run, where one can be made.
            python = nobody_python.interpreter()
            if python is None:
                pytest.skip(why_not)
        c.add_worker(extra=["--run-as", "nobody"], slots=1, python=python)
        whoami = c.script("whoami.py", "import os; print('UID', os.getuid())\n")
        client = c.client()
        dag = client.submit_dag("who", [TitanJob(job_id="w", filename=whoami)])
        assert client.wait(f"{dag['ref']}/w", timeout=60)["state"] == "COMPLETED"
        assert f"UID {65534}" in client.fetch_logs(f"{dag['ref']}/w")
        result = hunt(c)
        assert result["minted"] == [], result
        assert not any(f.startswith(str(c.data)) for f in result["credential_files"]), result
    finally:
        c.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="--run-as needs a root worker")
def test_under_run_as_the_workspace_is_the_job_users_group_s_alone(
        world_readable_root: Path) -> None:
    """The job user reaches the workspace through its group; other local users do not (it
    was 0755: anyone could read every job's scripts, archives and outputs)."""
    import stat

    from titan import errors
    from titan.worker.isolation import _reachable, prepare

    root = world_readable_root / "titan_workspace"
    for name in ("shared", "tmp"):
        (root / name).mkdir(parents=True)
    root.chmod(0o755)
    try:
        prepare(root, run_as="nobody")
    except errors.ConfigError as exc:  # where the interpreter lives in a private home
        assert "cannot read the Python installation" in str(exc)
    st = root.stat()
    assert stat.S_IMODE(st.st_mode) == 0o750 and (st.st_uid, st.st_gid) == (0, 65534)
    assert _reachable(root / "shared", 65534, (65534,)) is None  # the job user gets in
    assert _reachable(root, 12345, (12345,)) == root  # any other user does not


def test_run_as_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    """A worker asked for isolation it cannot give refuses to start, with the reason: never a
    silent downgrade."""
    from titan import errors
    from titan.worker.isolation import prepare

    root = tmp_path / "titan_workspace"
    for name in ("shared", "tmp"):
        (root / name).mkdir(parents=True)
    if os.geteuid() != 0:
        with pytest.raises(errors.ConfigError, match="needs the worker to run as root"):
            prepare(root, run_as="nobody")
        return
    with pytest.raises(errors.ConfigError, match="no such user"):
        prepare(root, run_as="no-such-user-here")
    # pytest's tmp is root's alone (0700): nobody could not reach the workspace.
    with pytest.raises(errors.ConfigError, match="cannot reach the workspace"):
        prepare(root, run_as="nobody")


CA_JOB = """
import os
from titan import TitanClient
TitanClient().store_put("ca/" + os.environ["TITAN_JOB_ID"], "verified")
"""


@pytest.mark.skipif(landlock.abi_version() < 1, reason="this kernel has no Landlock")
def test_a_sandboxed_job_reads_the_ca_file_its_worker_hands_it(tmp_path: Path) -> None:
    """TITAN_CA_FILE is passed on to jobs, but the sandbox's rules did not cover it: the SDK
    died in every job with a PermissionError traceback. The file is in the rules now; one
    where no job may read (the user config dir) is said at the worker's start, and a job
    that meets it anyway gets one line naming it."""
    from titan.client.tls import self_signed

    cert, key = self_signed(tmp_path / "tls", ["127.0.0.1"])
    home = tmp_path / "worker-home"
    home.mkdir()
    shutil.copy(cert, home / "master-ca.pem")  # "a copy of it" on the worker's host
    hidden = Path(os.environ["TITAN_CONFIG_DIR"]) / "master-ca.pem"
    shutil.copy(cert, hidden)
    c = Cluster(tmp_path, tls=(cert, key))
    try:
        c.start_master()
        c.add_worker("CA", slots=1, extra=["--sandbox"],
                     env={"TITAN_CA_FILE": str(home / "master-ca.pem")})
        c.add_worker("HIDDEN", slots=1, extra=["--sandbox"], env={"TITAN_CA_FILE": str(hidden)})
        assert f"TITAN_CA_FILE={hidden} lies in" in c.log("worker-1.log")
        client = c.client()  # trusts the master by the pin its start recorded
        script = c.script("ca_job.py", CA_JOB)
        client.submit_dag("ca", [TitanJob("ok", script, requirement="CA"),
                                 TitanJob("hidden", script, requirement="HIDDEN", retries=0)])
        assert client.wait("ca/ok", timeout=60)["state"] == "COMPLETED", \
            client.fetch_logs("ca/ok")
        assert client.store_get("ca/ok") == "verified"
        assert client.wait("ca/hidden", timeout=60)["state"] == "FAILED"
        said = client.fetch_logs("ca/hidden")
        assert f"ConfigError: TITAN_CA_FILE: cannot read the certificate file {hidden}" in said
        assert "PermissionError" not in said, said
    finally:
        c.stop()
