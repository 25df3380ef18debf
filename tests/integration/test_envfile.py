"""Seed 001's prerequisite: provider keys in the project's .env reach the jobs of a `titan up`
started there — without the value ever showing in a log."""

from __future__ import annotations

from collections.abc import Callable

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
