"""Seed 001's prerequisite: provider keys in the project's .env reach the jobs of a `titan up`
started there — without the value ever showing in a log."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import free_port
from tests.integration.harness import Cluster
from titan_sdk import TitanJob

SECRET = "sk-dotenv-4f1c9a7e"
CHECK = f"""
import os
print("GEMINI_API_KEY from .env:", "match" if os.environ.get("GEMINI_API_KEY") == {SECRET!r}
      else "missing")
print("TITAN_SECRET_THING:", "leaked" if os.environ.get("TITAN_SECRET_THING") else "withheld")
"""


def test_keys_in_dotenv_reach_jobs_and_no_log(make_cluster: Callable[..., Cluster]) -> None:
    c = make_cluster()
    # `titan up` runs in c.root, the project directory here.
    (c.root / ".env").write_text(f"GEMINI_API_KEY={SECRET}\nTITAN_SECRET_THING=hush\n")
    c.up(slots=1)
    client = c.client()
    client.submit_job(TitanJob("check_env", c.script("check_env.py", CHECK)))
    assert client.wait("check_env", timeout=60)["state"] == "COMPLETED"
    logs = client.fetch_logs("check_env")
    assert "GEMINI_API_KEY from .env: match" in logs
    # A credential-looking name that is not a provider key stays with the worker.
    assert "TITAN_SECRET_THING: withheld" in logs
    for name in ("master.log",):
        assert SECRET not in c.log(name)


PLANT = """
with open(".env", "w") as fh:  # the job's working directory: the worker's shared folder
    fh.write("TITAN_LLM_API_BASE=http://127.0.0.1:9/v1\\n")
"""
VICTIM = """
import os
from titan import envfile
envfile.load()  # what the SDK does before its first hosted call
print("api base:", os.environ.get("TITAN_LLM_API_BASE", "unset"))
"""


def test_a_job_never_loads_the_dotenv_another_job_left_in_the_shared_folder(
        make_cluster: Callable[..., Cluster]) -> None:
    """A job planted `.env` in the shared folder, and the next job's SDK loaded it: its model
    calls, key included, went to the planter's server (a QA pass). A job reads `.env` only
    from its own project folder."""
    c = make_cluster()
    c.up(slots=1)
    client = c.client()
    client.submit_job(TitanJob("plant", c.script("plant.py", PLANT)))
    assert client.wait("plant", timeout=60)["state"] == "COMPLETED"
    client.submit_job(TitanJob("victim", c.script("victim.py", VICTIM)))
    assert client.wait("victim", timeout=60)["state"] == "COMPLETED"
    logs = client.fetch_logs("victim")
    assert "api base: unset" in logs, logs
    assert "a job reads .env only from its own project folder" in logs, logs


def test_a_bad_value_from_dotenv_is_said_to_come_from_it(tmp_path: Path) -> None:
    """A setting the user never typed, refused with no word of where it came from, read as a
    mystery (an ops QA pass)."""
    (tmp_path / ".env").write_text("TITAN_LEASE_SECONDS=1e300\n")
    (tmp_path / ".env").chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TITAN_")}
    out = subprocess.run(
        [sys.executable, "-m", "titan", "up", "--port", str(free_port()),
         "--dashboard-port", str(free_port()), "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"TITAN_LEASE_SECONDS must be 1 to 3600 seconds, got 1e+300 (set in " \
           f"{tmp_path / '.env'})" in out.stderr, out.stderr


def _titan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TITAN_")}
    env["HOME"] = str(tmp_path)  # no user config of the developer's to find a master by
    return subprocess.run([sys.executable, "-m", "titan", *args], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=60)


def test_titan_up_refuses_a_bad_worker_setting_before_starting_its_master(
        tmp_path: Path) -> None:
    """A local worker's setting that `titan up` read from .env and the worker refused: the
    master had started and the banner said all was ready, then the worker died on the value,
    with no word of the file it came from (a docs walkthrough). Now it is refused first, as
    the master's own settings are, and nothing is started or made."""
    for setting in ("TITAN_ZYGOTE_LEAN=7", "TITAN_SERVICE_HOST=not a host"):
        (tmp_path / ".env").write_text(setting + "\n")
        (tmp_path / ".env").chmod(0o600)
        out = _titan(tmp_path, "up", "--port", str(free_port()), "--dashboard-port", "0",
                     "--data-dir", str(tmp_path / "data"))
        name = setting.split("=")[0]
        assert out.returncode == 1, out.stdout + out.stderr
        assert "Titan master" not in out.stdout, out.stdout
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {name} "), out.stderr
        assert lines[0].endswith(f"(set in {tmp_path / '.env'})"), out.stderr
        assert not (tmp_path / "data").exists()


def test_titan_worker_reads_its_transport_from_dotenv(tmp_path: Path) -> None:
    """TITAN_WORKER_TRANSPORT was read as the parser was built, before ./.env was loaded: a
    .env's value never reached `titan worker` (docs/configuration.md says it sets any
    setting). A bad one now says so, naming the file, before any master is looked for."""
    (tmp_path / ".env").write_text("TITAN_WORKER_TRANSPORT=carrier\n")
    (tmp_path / ".env").chmod(0o600)
    out = _titan(tmp_path, "worker", "--burst", "--workdir", str(tmp_path / "w"))
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.strip() == (
        "error: the worker transport must be one of channel, http (got 'carrier'; "
        f"TITAN_WORKER_TRANSPORT) (set in {tmp_path / '.env'})"), out.stderr
