"""No local user becomes admin by reading Titan's files (issue 15 item 2): the data dir is
0700 with every file in it 0600 (the database, its -wal/-shm, tokens, master.json, blobs),
loosened modes are tightened at start with a warning, the user config is private, and an
HTTP agent's header values (API keys) are never served back."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from tests.integration.harness import Cluster
from titan import TitanJob


def loose(path: Path) -> list[str]:
    """Every path under ``path`` that another local user could read or enter."""
    found = []
    for p in [path, *path.rglob("*")]:
        st = p.lstat()
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
            found.append(f"{p} {stat.S_IMODE(st.st_mode):04o}")
    return found


def test_the_data_dir_is_private_and_loosened_modes_are_tightened(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    try:
        c.up(slots=1)
        client = c.client()
        # Something in every kind of file: a blob, the store, the WAL.
        script = c.script("job.py", "print('hi')\n")
        client.submit_dag("private", [TitanJob(job_id="a", filename=script)])
        client.store_put("k", "v")
        names = {p.name for p in c.data.rglob("*")}
        assert {"titan.db", "admin.token", "worker.token", "master.json", "blobs"} <= names
        assert loose(c.data) == []
        # The user's config (a token per master) too.
        config = Path(os.environ["TITAN_CONFIG_DIR"])
        if config.exists():
            assert loose(config) == []

        # Someone loosens it while the master is down: the next start tightens it and says so.
        c.kill_master()
        c.data.chmod(0o755)
        (c.data / "titan.db").chmod(0o644)
        (c.data / "admin.token").chmod(0o644)
        blob = next(p for p in (c.data / "blobs").rglob("*") if p.is_file())
        blob.chmod(0o644)
        c.up(slots=1)
        assert loose(c.data) == []
        log = c.log()
        for path in (c.data, c.data / "titan.db", c.data / "admin.token", blob):
            assert f"{path} was mode" in log, (path, log[-3000:])
        assert "rotate tokens" in log
    finally:
        c.stop()


def test_http_agent_header_values_are_never_served_back(tmp_path: Path) -> None:
    secret = "sk-live-0123456789abcdef"
    c = Cluster(tmp_path)
    try:
        c.start_master()
        client = c.client()
        # A password in the URL is one too (httpx sends it as Basic auth).
        agent = {"name": "svc", "kind": "http",
                 "url": "https://svc-user:pw-0123456789abcdef@agent.example.com/run",
                 "headers": {"Authorization": f"Bearer {secret}", "X-Team": "blue"},
                 "tools": [{"name": "lookup", "description": "look up a thing"}]}
        created = client.create_evaluation("leaky", agent, [
            {"id": "t1", "user_instruction": "say hi"}])
        assert created["agent"]["headers"] == {"Authorization": "***", "X-Team": "***"}
        assert created["agent"]["url"] == "https://svc-user:***@agent.example.com/run"
        headers = {"Authorization": f"Bearer {c.admin_token}"}
        reads = [f"{c.url}/api/v1/evaluations", f"{c.url}/api/v1/evaluations/leaky",
                 f"{c.url}/api/v1/evaluations/leaky/tasks/t1"]
        dash = f"http://127.0.0.1:{c.dashboard_port}"
        reads += [f"{dash}/evaluations", f"{dash}/evaluations.json", f"{dash}/evaluations/leaky",
                  f"{dash}/evaluations/leaky.json", f"{dash}/evaluations/leaky/tasks/t1",
                  f"{dash}/evaluations/leaky/tasks/t1.json"]
        for url in reads:
            r = httpx.get(url, headers=headers, timeout=30)
            assert r.status_code == 200, (url, r.status_code, r.text[:300])
            assert secret not in r.text and "pw-0123456789abcdef" not in r.text, url
        listed = httpx.get(reads[0], headers=headers, timeout=30).json()["evaluations"][0]
        assert json.dumps(listed["agent"]["headers"]) == '{"Authorization": "***", "X-Team": "***"}'
    finally:
        c.stop()


def test_a_user_config_open_to_others_is_said_once_with_the_chmod(tmp_path: Path) -> None:
    """The README says ~/.titan/config.json (a token per master) is kept 0600; one found at
    0644 (copied with a loose umask, edited by hand) was read without a word. The CLI reads
    it and says so once, naming the file and the chmod to run, as ssh does of a key."""
    c = Cluster(tmp_path)
    try:
        c.start_master()
        config = Path(os.environ["TITAN_CONFIG_DIR"]) / "config.json"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600  # written private from the start
        env = {k: v for k, v in os.environ.items() if k not in ("TITAN_URL", "TITAN_HOST",
                                                                "TITAN_PORT", "TITAN_TOKEN")}

        def cli() -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "titan", "workers"], env=env,
                                  cwd=tmp_path / "scripts", capture_output=True, text=True,
                                  timeout=60)

        config.chmod(0o644)
        out = cli()
        assert out.returncode == 0, out.stderr  # read all the same: found the master
        warned = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
        assert warned == [f"warning: {config} holds tokens but is mode 0644, open to other "
                          f"local users; run `chmod 600 {config}` (anyone who read it may "
                          "hold its tokens: rotate them if in doubt)"], out.stderr
        config.chmod(0o600)
        out = cli()
        assert out.returncode == 0 and "warning" not in out.stderr, out.stderr
    finally:
        c.stop()


def test_under_umask_000_no_one_else_may_write_what_the_worker_keeps(tmp_path: Path) -> None:
    """`titan up` run with umask 000 made its workspace folder (``<data-dir>-workspace``) and
    the worker's own folders and files in it writable by everyone: another local user renamed
    ``titan_workspace`` away and put one of their own in its place, where the worker then
    wrote and ran the next job's script (and its cached blob, 0666, was theirs to rewrite) —
    their code, run as the master's user, with its token in reach."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "main.py").write_text("print('from the project')\n")
    c = Cluster(tmp_path)
    old = os.umask(0)
    try:
        c.up(slots=1)
    finally:
        os.umask(old)
    try:
        client = c.client()
        client.upload_project_folder(project)
        dag = client.submit_dag("umask", [
            TitanJob(job_id="a", filename=c.script("job.py", "print('hi')\n")),
            TitanJob(job_id="b", filename="proj/main.py", is_archive=True)])
        assert client.wait(dag, timeout=60)["status"] == "COMPLETED"
        workspace = c.data.with_name(c.data.name + "-workspace")
        assert stat.S_IMODE(workspace.stat().st_mode) == 0o700
        root = workspace / "titan_workspace"
        kept = [root, *(p for p in root.rglob("*") if p.parts[len(root.parts)] != "tmp"
                        and not (p.parent == root / "shared" and p.name != "job.py"))]
        assert any(p.suffix == ".zip" for p in kept) and any(len(p.name) == 64 for p in kept)
        writable = [f"{p} {stat.S_IMODE(p.lstat().st_mode):04o}" for p in kept
                    if p.lstat().st_mode & 0o022]
        assert writable == []
    finally:
        c.stop()


def test_a_worker_refuses_a_workdir_others_may_swap_its_workspace_in(tmp_path: Path) -> None:
    """A workdir anyone may write to (0777, no sticky bit) lets another user rename the
    worker's ``titan_workspace`` and put theirs in its place while it runs: refused at start,
    naming it, as ssh refuses a key in a folder others may write to."""
    c = Cluster(tmp_path)
    try:
        c.start_master()
        open_dir = tmp_path / "worker-0"
        open_dir.mkdir()
        open_dir.chmod(0o777)
        proc = c.add_worker(wait=False)
        assert proc.wait(timeout=60) != 0
        log = c.log("worker-0.log")
        assert f"{open_dir} may be written by any local user" in log, log[-2000:]
        assert "Traceback" not in log
        open_dir.chmod(0o1777)  # sticky, as /tmp: others cannot rename what is the worker's
        c.add_worker()
    finally:
        c.stop()
