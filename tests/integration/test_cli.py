"""Acceptance: the `titan` command as a user types it, against a real cluster."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.integration.harness import Cluster, next_of, shared_cluster, signed_in_reply
from titan.errors import AmbiguousRef, ConfigError, NotFound, ValidationFailed
from titan_sdk import TitanClient, TitanJob

cluster = shared_cluster()  # one `titan up` for the module (see harness.py)


def titan(cluster: Cluster, *args: str, check: bool = True, cwd: Path | None = None,
          token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=token or cluster.admin_token)
    out = subprocess.run([sys.executable, "-m", "titan", *args], env=env, cwd=cwd or cluster.root,
                         capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def on_terminal(cluster: Cluster, *args: str,
                answer: bytes) -> subprocess.CompletedProcess[str]:
    """``titan ARGS`` with its stdin on a terminal (where it asks before deleting), typing
    ``answer``."""
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    terminal, its_end = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "titan", *args], stdin=its_end,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                cwd=cluster.root, text=True)
        os.write(terminal, answer)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(terminal)
        os.close(its_end)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_text_that_cannot_be_sent_and_a_token_with_its_line_end(cluster: Cluster) -> None:
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    # A binary file piped in: one error line, no traceback, nothing stored.
    out = subprocess.run([sys.executable, "-m", "titan", "store", "put", "bin", "-"], env=env,
                         input=b"abc\xff\xfedef", capture_output=True, timeout=60)
    assert out.returncode == 1 and b"Traceback" not in out.stderr, out.stderr
    assert b"must be UTF-8 text" in out.stderr
    assert titan(cluster, "store", "get", "bin", check=False).returncode == 1
    # The token as a file or a secret mount gives it, with its line end (admin.token's own).
    env["TITAN_TOKEN"] = cluster.admin_token + "\n"
    out = subprocess.run([sys.executable, "-m", "titan", "store", "put", "nl", "ok"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    env["TITAN_TOKEN"] = "tt_abc\ndef"
    out = subprocess.run([sys.executable, "-m", "titan", "store", "get", "nl"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "the token holds U+000A (line feed) at character 7 of 10" in out.stderr


@pytest.mark.parametrize(("setting", "said"), [
    # Finite but huge: the master died of an OverflowError traceback.
    ("TITAN_MAX_LOG_MB=1e305", "error: TITAN_MAX_LOG_MB must be 0 to 1048576 MiB, got 1e+305"),
    # Said back as a 301-digit number.
    ("TITAN_DEFAULT_RETRIES=1e300",
     "error: TITAN_DEFAULT_RETRIES must be a whole number 0 to 100, got 1e+300"),
])
def test_a_huge_master_setting_stops_it_with_one_line(tmp_path: Path, setting: str,
                                                      said: str) -> None:
    name, value = setting.split("=")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TITAN_")}
    out = subprocess.run(
        [sys.executable, "-m", "titan", "master", "--port", str(free_port()),
         "--dashboard-port", "0", "--data-dir", str(tmp_path / "data")],
        env={**env, name: value, "TITAN_CONFIG_DIR": str(tmp_path / "cfg")}, cwd=tmp_path,
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr == said + "\n", out.stderr


@pytest.mark.parametrize(("held", "why"), [
    (b"\xff\xfe", "it is not plain ASCII text"),  # a traceback from the master and the CLI
    (b"x\n", "1 character, fewer than 32"),  # made a live admin token at start
    (b"tt_" + b"a" * 20 + b" " + b"b" * 20, "a space or control character in it"),
])
def test_a_token_file_that_holds_no_usable_token_stops_the_master_with_one_line(
        tmp_path: Path, held: bytes, why: str) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "admin.token").write_bytes(held)
    (data / "admin.token").chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TITAN_")}
    out = subprocess.run(
        [sys.executable, "-m", "titan", "master", "--port", str(free_port()),
         "--dashboard-port", "0", "--data-dir", str(data)],
        env={**env, "TITAN_CONFIG_DIR": str(tmp_path / "cfg")}, cwd=tmp_path,
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr == (f"error: {data / 'admin.token'} does not hold a usable token ({why}): "
                          "delete the file and start the master again to get a new one\n"), \
        out.stderr
    if held.startswith(b"\xff"):  # the CLI reading it as a client: one line too
        (data / "master.json").write_text(json.dumps({"url": "http://127.0.0.1:1"}))
        said = subprocess.run([sys.executable, "-m", "titan", "status"], cwd=tmp_path,
                              env={**env, "TITAN_DATA_DIR": str(data),
                                   "TITAN_CONFIG_DIR": str(tmp_path / "cfg")},
                              capture_output=True, text=True, timeout=60)
        assert said.returncode == 1 and "Traceback" not in said.stderr, said.stderr
        assert "does not hold a token (it is not text)" in said.stderr, said.stderr


@pytest.mark.parametrize(("pasted", "said"), [
    ("\u200b", "U+200B (ZERO WIDTH SPACE) at character 11"),
    ("\u201d", "U+201D (RIGHT DOUBLE QUOTATION MARK) at character 11"),
    ("\u00e9", "U+00E9 (LATIN SMALL LETTER E WITH ACUTE) at character 11"),
    # configuration.md promised these named too: they were "a space or a control character".
    (" x", "a space (U+0020) at character 11 of 12"),
    ("\tx", "U+0009 (tab) at character 11 of 12"),
    ("\x01", "U+0001 (a control character) at character 11 of 11"),
    ("\x7f", "U+007F (delete) at character 11 of 11")])
def test_a_token_with_a_pasted_character_names_it(cluster: Cluster, pasted: str,
                                                  said: str) -> None:
    # A smart quote or a zero-width space copied along with a token: httpx raised a bare
    # UnicodeEncodeError (a traceback from the CLI, `titan mcp` dead at start); now a
    # ConfigError naming the character and where it sits, never the token.
    token = "tt_secret9" + pasted
    with pytest.raises(ConfigError, match=re.escape(said)) as got:
        TitanClient(port=cluster.port, token=token).store_get("x")
    assert "secret9" not in str(got.value)
    for command in (["status"], ["mcp"]):
        out = titan(cluster, *command, check=False, token=token)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert said in out.stderr and "secret9" not in out.stderr + out.stdout


def test_an_empty_token_is_refused_and_an_empty_titan_token_is_unset(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    # token="" fell back silently on the data dir's admin token: a `--token "$UNSET"` ran
    # with admin rights. Given empty, it is refused; an empty TITAN_TOKEN is no token given.
    monkeypatch.setenv("TITAN_DATA_DIR", str(cluster.data))
    for blank in ("", "  "):
        monkeypatch.setenv("TITAN_TOKEN", blank)
        with pytest.raises(ConfigError, match="the token given .* is empty"):
            TitanClient(token=blank)
        with TitanClient() as found:  # the data dir's admin token
            assert found.endpoint.token == cluster.admin_token
            found.store_put("empty-env", blank)
    env = {k: v for k, v in cluster.env.items() if k not in ("TITAN_HOST", "TITAN_PORT")}
    env.update(TITAN_DATA_DIR=str(cluster.data), TITAN_TOKEN="")
    out = subprocess.run([sys.executable, "-m", "titan", "--token", "", "store", "get",
                          "empty-env"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "the token given (token= or --token) is empty" in out.stderr
    out = subprocess.run([sys.executable, "-m", "titan", "store", "get", "empty-env", "--json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["value"] == "  "


def test_the_cli_without_a_token_names_its_own_option_and_variable(
        cluster: Cluster, tmp_path: Path) -> None:
    # It said "pass token=", the Python client's wording, to a user of the command line.
    env = {k: v for k, v in cluster.env.items() if not k.startswith("TITAN_")}
    env.update(TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port), HOME=str(tmp_path),
               TITAN_CONFIG_DIR=str(tmp_path / "config"))
    out = subprocess.run([sys.executable, "-m", "titan", "store", "get", "k"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"no token was found for {cluster.url}: set TITAN_TOKEN (or pass --token), or " \
           "run `titan up` on this machine (it records one)" in out.stderr, out.stderr
    assert "token=" not in out.stderr
    sdk = subprocess.run([sys.executable, "-c", "from titan import TitanClient\n"
                          "TitanClient().store_get('k')"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert "no token was found" in sdk.stderr and "pass token=" in sdk.stderr, sdk.stderr


def test_store_status_cancel_workers_and_tokens(cluster: Cluster) -> None:
    titan(cluster, "store", "put", "greeting", "héllo wörld")
    assert titan(cluster, "store", "get", "greeting").stdout.strip() == "héllo wörld"
    # --json, as every command says it takes (it was ignored but by `keys`).
    assert json.loads(titan(cluster, "store", "get", "greeting", "--json").stdout) == {
        "key": "greeting", "value": "héllo wörld"}
    assert json.loads(titan(cluster, "store", "put", "tmp", "1", "--json").stdout)["ok"]
    assert json.loads(titan(cluster, "store", "delete", "tmp", "--json").stdout)["deleted"]
    missing = titan(cluster, "store", "get", "nope", check=False)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "greeting" in titan(cluster, "store", "keys").stdout

    slow = cluster.script("slow.py", "import time\ntime.sleep(60)\n")
    client = cluster.client()
    client.submit_dag("cli_dag", [TitanJob(job_id="slow", filename=slow)])
    status = json.loads(titan(cluster, "status", "cli_dag", "--json").stdout)
    assert status["name"] == "cli_dag"
    titan(cluster, "cancel", "cli_dag")
    assert client.wait("cli_dag", timeout=30)["status"] == "CANCELLED"
    assert "CANCELLED" in titan(cluster, "status", "slow").stdout

    workers = json.loads(titan(cluster, "workers", "--json").stdout)
    assert any(w["state"] == "live" for w in workers["workers"])

    viewer = titan(cluster, "token", "create", "--role", "viewer").stdout.strip().split()[-1]
    denied = titan(cluster, "store", "put", "k", "v", check=False, token=viewer)
    assert denied.returncode == 1 and "viewer" in denied.stderr
    assert titan(cluster, "store", "get", "greeting", token=viewer).stdout.strip() == "héllo wörld"


def test_dags_list_filters_runs_and_list_actions_answer_to_ls(cluster: Cluster) -> None:
    # `titan dags` could only prune: listing DAG runs by status or name had no command.
    client = cluster.client()
    ok = cluster.script("ok.py", "pass\n")
    bad = cluster.script("bad.py", "raise SystemExit(3)\n")
    client.submit_dag("listed_ok", [TitanJob(job_id="a", filename=ok)], wait=True, timeout=60)
    client.submit_dag("listed_bad", [TitanJob(job_id="b", filename=bad)], wait=True, timeout=60)
    failed = json.loads(titan(cluster, "dags", "list", "--status", "failed", "--json").stdout)
    assert "listed_bad" in [d["name"] for d in failed]
    assert {d["status"] for d in failed} == {"FAILED"}
    named = titan(cluster, "dags", "ls", "--name", "listed_ok").stdout
    assert "DAG-listed_ok#1" in named and "COMPLETED 1" in named and "listed_bad" not in named
    none = titan(cluster, "dags", "list", "--name", "no_such_dag")
    assert none.stdout.strip() == "no DAG runs match"
    wrong = titan(cluster, "dags", "list", "--status", "done", check=False)
    assert wrong.returncode == 2 and "invalid choice: 'DONE'" in wrong.stderr
    # `ls` where a group lists, `rm` where it deletes, as shells taught: each the same action.
    titan(cluster, "store", "set", "aliased", "1")
    assert "aliased" in titan(cluster, "store", "ls").stdout
    assert json.loads(titan(cluster, "store", "rm", "aliased", "--json").stdout)["deleted"]
    for group in (["runs"], ["token"], ["schedule"], ["files"], ["eval"]):
        typed = titan(cluster, *group, "ls", "--json")
        assert typed.stdout == titan(cluster, *group, "list", "--json").stdout, group
    gone = titan(cluster, "schedule", "rm", "no_such_schedule", "--yes", check=False)
    assert gone.returncode == 1 and "no_such_schedule" in gone.stderr


def test_submit_wait_says_which_jobs_failed_and_why(cluster: Cluster) -> None:
    # It printed "PARTIAL (COMPLETED 1, FAILED 1)" alone: a second command to learn which.
    (cluster.root / "fine.py").write_text("print('fine')\n")
    (cluster.root / "broken.py").write_text("raise ValueError('the input is empty')\n")
    (cluster.root / "mixed.yaml").write_text(
        "name: mixed\njobs:\n  - id: ok\n    file: fine.py\n  - id: bad\n    file: broken.py\n"
        "  - id: after\n    file: fine.py\n    depends_on: [bad]\n")
    out = titan(cluster, "submit", "mixed.yaml", "--wait", "--timeout", "60", check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].startswith("PARTIAL (") and "FAILED 1" in lines[1], out.stdout
    assert "  bad FAILED: exit code 1: ValueError: the input is empty" in lines, out.stdout
    assert any(line.startswith("  after SKIPPED: upstream job 'bad'") for line in lines), lines
    assert not any(line.startswith("  ok ") for line in lines)
    # `logs --follow` exits as `submit --wait` does: 0 only if the job COMPLETED (it was 0
    # for a failed job too).
    follow = titan(cluster, "logs", "mixed/bad", "--follow", check=False)
    assert follow.returncode == 1 and "ValueError: the input is empty" in follow.stdout, follow
    assert titan(cluster, "logs", "mixed/bad", "--follow", "--attempt", "1",
                 check=False).returncode == 1
    assert titan(cluster, "logs", "mixed/ok", "--follow").stdout == "fine\n"
    assert titan(cluster, "logs", "mixed/bad").returncode == 0  # not following: it printed


def test_a_wait_on_a_job_no_worker_can_take_says_why(cluster: Cluster) -> None:
    # The cluster's worker offers GENERAL only: a GPU job waits. `submit --wait` and
    # `logs --follow` used to wait in silence until their timeout.
    (cluster.root / "gpu.py").write_text("print('on a GPU')\n")
    (cluster.root / "gpu.yaml").write_text(
        "name: needs_gpu\njobs:\n  - id: g\n    file: gpu.py\n    requirement: GPU\n")
    out = titan(cluster, "submit", "gpu.yaml", "--wait", "--timeout", "5", check=False)
    assert out.returncode == 124, out.stdout + out.stderr  # still going: not failed (as timeout(1))
    assert "g is PENDING: waiting for a worker with capability GPU" in out.stderr, out.stderr
    assert "timed out after 5s waiting for DAG needs_gpu" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    # With --json a script still learns which DAG it started (stdout was empty).
    out = titan(cluster, "submit", "gpu.yaml", "--wait", "--timeout", "1", "--json",
                check=False)
    assert out.returncode == 124 and json.loads(out.stdout)["ref"] == "needs_gpu#2", out.stdout
    assert out.stderr.splitlines()[0] == "needs_gpu#2", out.stderr  # said before the wait
    # --timeout bounds --wait: alone it was silently ignored.
    out = titan(cluster, "submit", "gpu.yaml", "--timeout", "1", check=False)
    assert out.returncode == 1 and "--timeout bounds --wait" in out.stderr, out.stderr
    follow = subprocess.Popen(
        [sys.executable, "-m", "titan", "logs", "needs_gpu/g", "--follow"],
        env=dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
                 TITAN_TOKEN=cluster.admin_token),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follow.stderr is not None
        line = follow.stderr.readline()
        assert "g is PENDING: waiting for a worker with capability GPU" in line, line
    finally:
        follow.kill()
        follow.wait()
    titan(cluster, "cancel", "needs_gpu")
    # Ctrl-C (or a CI step's timeout) during the wait: the reference was said first (with
    # --json it was not said at all), and what to do with the DAG, which runs on.
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    for run, extra in ((3, ["--json"]), (4, [])):
        waiting = subprocess.Popen(
            [sys.executable, "-m", "titan", "submit", "gpu.yaml", "--wait", *extra], env=env,
            cwd=cluster.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert waiting.stdout is not None and waiting.stderr is not None
        said = (waiting.stderr if extra else waiting.stdout).readline()
        assert said == f"needs_gpu#{run}\n", said
        assert "is PENDING" in waiting.stderr.readline()  # waiting now
        waiting.send_signal(signal.SIGINT)
        out_text, err_text = waiting.communicate(timeout=30)
        assert waiting.returncode == 130 and out_text == "", out_text + err_text
        assert err_text == (f"still running: needs_gpu#{run} (titan status DAG-needs_gpu#{run}, "
                            f"titan cancel DAG-needs_gpu#{run})\n"), err_text
        titan(cluster, "cancel", f"needs_gpu#{run}")


def test_a_script_is_submitted_as_a_one_job_dag_with_its_arguments(cluster: Cluster,
                                                                    tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("import sys\nprint('train', sys.argv[1:])\n")
    (tmp_path / "clean up.sh").write_text("echo cleaned \"$1\"\n")
    out = titan(cluster, "submit", "--wait", "train.py", "--", "--epochs", "3", cwd=tmp_path)
    assert out.stdout.splitlines()[-1] == "COMPLETED (COMPLETED 1)", out.stdout
    assert titan(cluster, "logs", "train/train").stdout.strip() == "train ['--epochs', '3']"
    # The job id is the file's name made a valid id.
    out = titan(cluster, "submit", "clean up.sh", "now", "--wait", cwd=tmp_path)
    assert out.stdout.startswith("clean-up#"), out.stdout
    assert titan(cluster, "logs", "clean-up/clean-up").stdout.strip() == "cleaned now"
    # Options after the script are options; after "--" everything is the script's.
    out = titan(cluster, "submit", "train.py", "--wait", "--", "--lr", "1", cwd=tmp_path)
    assert out.stdout.splitlines()[-1] == "COMPLETED (COMPLETED 1)", out.stdout
    assert titan(cluster, "logs", "train/train").stdout.strip() == "train ['--lr', '1']"
    out = titan(cluster, "submit", "train.py", "7", "--wait", cwd=tmp_path)
    assert out.stdout.splitlines()[-1] == "COMPLETED (COMPLETED 1)", out.stdout
    (tmp_path / "Über.py").write_text("print('umlaut')\n")
    out = titan(cluster, "submit", "Über.py", "--wait", cwd=tmp_path)
    assert out.stdout.startswith("Uber#"), out.stdout
    (tmp_path / "LOUD.PY").write_text("print('x')\n")
    for argv, said in ((["missing.py"], "no script missing.py"),
                       (["p.yaml", "extra"], "arguments (extra) are for a script"),
                       (["--allow-file", "x.py", "train.py"], "--allow-file is for a pipeline"),
                       (["LOUD.PY"], "name the script LOUD.py")):
        out = titan(cluster, "submit", *argv, check=False, cwd=tmp_path)
        assert out.returncode == 1 and said in out.stderr, (argv, out.stderr)
        assert "Traceback" not in out.stderr


def test_a_program_is_submitted_as_a_one_job_dag_whatever_its_name(cluster: Cluster,
                                                                  tmp_path: Path) -> None:
    """The SDK runs a program (a #! line, or compiled) as a job, but `titan submit` read one
    without a .py or .sh name as a YAML pipeline: "the pipeline must be a mapping", or
    "'utf-8' codec can't decode byte" for a binary (a docs walkthrough)."""
    tool = tmp_path / "mytool"
    tool.write_text("#!/bin/sh\necho tool ran \"$@\"\n")
    tool.chmod(0o755)
    out = titan(cluster, "submit", "mytool", "--wait", "--", "-v", "now", cwd=tmp_path)
    assert out.stdout.startswith("mytool#"), out.stdout
    assert out.stdout.splitlines()[-1] == "COMPLETED (COMPLETED 1)", out.stdout
    assert titan(cluster, "logs", "mytool/mytool").stdout.strip() == "tool ran -v now"
    binary = tmp_path / "true.bin"
    binary.write_bytes(Path(shutil.which("true") or "/bin/true").read_bytes())
    binary.chmod(0o755)
    out = titan(cluster, "submit", "true.bin", "--wait", cwd=tmp_path)
    assert out.stdout.startswith("true#"), out.stdout
    assert out.stdout.splitlines()[-1] == "COMPLETED (COMPLETED 1)", out.stdout
    # Named as YAML, a file is a pipeline still (a comment may begin with #!).
    (tmp_path / "odd.yaml").write_text("#!/not/a/program\nname: odd\njobs:\n  - id: a\n"
                                       "    file: mytool\n")
    out = titan(cluster, "submit", "odd.yaml", "--wait", cwd=tmp_path)
    assert out.stdout.startswith("odd#"), out.stdout


def test_unknown_job_is_a_clear_error(cluster: Cluster) -> None:
    out = titan(cluster, "status", "no_such_job", check=False)
    assert out.returncode == 1
    assert "no_such_job" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(("args", "said"), [
    (("determinism", "ü/../x"), "no agent run 'ü/../x'"),
    (("determinism", "a/b"), "no agent run 'a/b'"),
    (("runs", "show", "x/.."), "no agent run 'x/..'"),
    (("replay", "a/b"), "no agent run 'a/b'"),
    (("runs", "archive", "a/b"), "no agent run 'a/b'"),
    (("runs", "verify", "a/b"), "no agent run 'a/b'"),
    (("schedule", "show", "a/../b"), "no schedule named 'a/../b'"),
    (("schedule", "delete", "a/b"), "no schedule named 'a/b'"),
    (("token", "revoke", "a/b"), "no live token 'a/b'"),
])
def test_a_name_with_a_slash_is_no_such_name_not_a_bare_not_found(
        cluster: Cluster, args: tuple[str, ...], said: str) -> None:
    """The master decodes an escaped '/' before routing, so `titan determinism "ü/../x"`
    reached no route and said a bare "error: Not Found" (a QA pass); a name without one
    says "no agent run 'nope'"."""
    out = titan(cluster, *args, check=False)
    assert (out.returncode, out.stderr.strip()) == (1, f"error: {said}"), out.stdout
    assert titan(cluster, "determinism", "nope", check=False).stderr.strip() == \
        "error: no agent run 'nope'"


def test_what_the_master_refuses_in_a_pipeline_points_at_its_line(cluster: Cluster,
                                                                   tmp_path: Path) -> None:
    # Found after the file was read (by the master, or looking for the script), still said
    # at the job's field: file:line: message.
    (tmp_path / "ok.py").write_text("print('ok')\n")
    cases = {
        "cycle": ("name: c\njobs:\n  - id: a\n    file: ok.py\n    depends_on: [b]\n"
                  "  - id: b\n    file: ok.py\n    depends_on: [a]\n", ":5:", "cycle"),
        "type": ("name: t\njobs:\n  - id: a\n    file: ok.py\n  - id: b\n    file: ok.py\n"
                 "    type: BOGUS\n", ":7:", "BOGUS"),
        "script": ("name: s\njobs:\n  - id: a\n    file: nope.py\n", ":3:", "nope.py"),
    }
    for name, (text, at, said) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        out = titan(cluster, "submit", str(path), check=False, cwd=tmp_path)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert f"{path}{at}" in out.stderr and said in out.stderr, (name, out.stderr)


def test_titan_up_stops_when_its_worker_cannot_start(tmp_path: Path) -> None:
    # It went on serving with no worker (a bad TITAN_* setting stopped the worker alone), and
    # every job waited for a worker for ever. The worker's settings are now checked before
    # anything starts: one error line, no master, no data dir.
    port, dash = free_port(), free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1", TITAN_ZYGOTE_SPARES="100")
    out = subprocess.run(
        [sys.executable, "-m", "titan", "up", "--port", str(port), "--dashboard-port", str(dash),
         "--data-dir", str(tmp_path / "data"), "--slots", "1"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    said = out.stdout + out.stderr
    assert "TITAN_ZYGOTE_SPARES must be between 0 and 64" in said
    assert "Traceback" not in said and "ready" not in said.lower(), said
    assert not (tmp_path / "data").exists()


def test_titan_up_leaves_a_worker_whose_token_is_revoked_stopped_and_says_why(
        tmp_path: Path) -> None:
    """Its worker.token revoked, `titan up` started its worker again for ever (2, 4, 8 ...
    s), saying only "unknown or revoked token"; restarted, it pointed at an admin.token that
    was revoked as if it opened anything (a QA pass)."""
    port, dash = free_port(), free_port()
    data = tmp_path / "data"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    up = [sys.executable, "-m", "titan", "up", "--port", str(port), "--dashboard-port",
          str(dash), "--data-dir", str(data), "--slots", "1"]
    proc = subprocess.Popen(up, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=tmp_path)
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        while not lines or "Ctrl-C" not in lines[-1]:
            lines.append(proc.stdout.readline())
            assert lines[-1] or proc.poll() is None, "".join(lines)
        admin = TitanClient(url=f"http://127.0.0.1:{port}",
                            token=(data / "admin.token").read_text().strip())
        spare = admin.create_token("admin", name="spare")
        tokens = {t["name"]: t["id"] for t in admin.list_tokens()}
        admin.revoke_token(tokens["local worker (titan up)"])
        while "titan up: the master refuses the local worker's token" not in lines[-1]:
            lines.append(proc.stdout.readline())
            assert lines[-1], "titan up stopped:\n" + "".join(lines)
            assert "starting it again" not in lines[-1], "".join(lines)
        assert f"({data / 'worker.token'}: revoked, or not a worker's); it is not started " \
            "again: delete that file and restart `titan up` to get a new one (jobs wait for " \
            "a worker meanwhile)" in lines[-1]
        assert admin.health()  # the master serves on
        TitanClient(url=f"http://127.0.0.1:{port}", token=spare["token"]).revoke_token(
            tokens["admin (titan up)"])
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
    assert "starting it again" not in rest, rest
    # Started again with both files revoked: it stops naming both, before its banner (which
    # read like a cluster ready for work) and without starting a worker that cannot start.
    out = subprocess.run(up, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    said = out.stdout + out.stderr
    assert out.returncode == 1, said
    assert f"titan up: the master refuses the local worker's token; {data / 'worker.token'} " \
        f"and {data / 'admin.token'} hold a REVOKED token: delete them and run `titan up` " \
        "again to get new ones; stopping" in said
    assert "Ctrl-C" not in said and "Worker        local" not in said, said
    assert "exited at start" not in said


def test_titan_up_restarts_a_worker_killed_soon_after_its_start(tmp_path: Path) -> None:
    """A worker killed by a signal within the start grace (the OOM killer, a kill -9) had
    started: `titan up` stopped the whole cluster as if it could not start (a QA pass)."""
    port, dash = free_port(), free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "titan", "up", "--port", str(port), "--dashboard-port", str(dash),
         "--data-dir", str(tmp_path / "data"), "--slots", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    assert proc.stdout is not None
    try:
        lines = []
        while not lines or "Ctrl-C" not in lines[-1]:
            lines.append(proc.stdout.readline())
            assert lines[-1] or proc.poll() is None, "".join(lines)
        pids = subprocess.run(["pgrep", "-f", f"titan worker --master http://127.0.0.1:{port}"],
                              capture_output=True, text=True).stdout.split()
        assert pids, "".join(lines)
        for pid in pids:
            os.kill(int(pid), signal.SIGKILL)
        while "starting it again" not in lines[-1]:
            lines.append(proc.stdout.readline())
            assert lines[-1], "titan up stopped:\n" + "".join(lines)
        assert "exited at start" not in "".join(lines)
        check = ("from titan_sdk import TitanClient, TitanJob\nc = TitanClient()\n"
                 f"c.submit_job(TitanJob(job_id='after', filename={str(tmp_path / 'j.py')!r}))\n"
                 "print(c.wait('after', timeout=60)['state'])\n")
        (tmp_path / "j.py").write_text("print('ran')\n")
        ran = subprocess.run([sys.executable, "-c", check], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=90)
        assert ran.stdout.strip() == "COMPLETED", ran.stdout + ran.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def test_titan_up_prints_where_things_are_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port, dash = free_port(), free_port()
    data = tmp_path / "data"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "titan", "up", "--port", str(port), "--dashboard-port", str(dash),
         "--data-dir", str(data), "--slots", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "Ctrl-C" in line:
            break
    text = "".join(lines)
    assert f"http://127.0.0.1:{port}" in text and f"http://127.0.0.1:{dash}/" in text, text
    assert oct((data / "admin.token").stat().st_mode & 0o777) == "0o600"
    # The SDK finds this master with no arguments: the user config was written by `titan up`.
    code = ("from titan_sdk import TitanClient\n"
            "c = TitanClient()\n"
            "c.store_put('found', 'yes')\n"
            "print(c.store_get('found'))\n")
    found = subprocess.run([sys.executable, "-c", code], env=env, cwd="/",
                           capture_output=True, text=True, timeout=30)
    assert found.stdout.strip() == "yes", found.stderr
    worker_pids = subprocess.run(["pgrep", "-f", f"titan worker --master http://127.0.0.1:{port}"],
                                 capture_output=True, text=True).stdout.split()
    assert worker_pids, "the local worker runs"
    # Ctrl-C drains: a running job finishes, however long it takes (it was killed after 5 s
    # while the banner said "draining").
    marker = tmp_path / "finished"
    job = tmp_path / "slow.py"
    job.write_text(f"import time, pathlib\ntime.sleep(7)\npathlib.Path({str(marker)!r}).write_text('ok')\n")
    submit = ("import time\nfrom titan_sdk import TitanClient, TitanJob\nc = TitanClient()\n"
              f"c.submit_job(TitanJob(job_id='slow', filename={str(job)!r}))\n"
              "while c.get_job('slow')['state'] != 'RUNNING':\n    time.sleep(0.1)\n")
    subprocess.run([sys.executable, "-c", submit], env=env, cwd="/", check=True, timeout=60)
    assert (data / "master.json").is_file()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    assert marker.read_text() == "ok", "the running job was stopped, not drained"
    # Stopped, it no longer names itself to clients looking from its directory down (they
    # found it there before a running master elsewhere); its state stays.
    assert not (data / "master.json").exists() and (data / "admin.token").is_file()
    for pid in worker_pids:
        for _ in range(100):
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"worker {pid} still running after Ctrl-C")


def test_the_tokens_a_first_start_makes_are_named_for_its_command(
        cluster: Cluster, make_cluster: Any) -> None:
    # `titan master` named them "admin (titan up)" and "local worker", though it starts no
    # worker; its worker.token is for the `titan worker`s its operator starts.
    names = {t["name"] for t in json.loads(titan(cluster, "token", "list", "--json").stdout)}
    assert {"admin (titan up)", "local worker (titan up)"} <= names, names
    master = make_cluster().start_master()
    names = {t["name"] for t in master.api("GET", "/tokens")["tokens"]}
    assert names == {"admin (titan master)", "worker (titan master)"}, names
    master.add_worker(slots=1)  # with the worker.token it wrote


def test_a_second_master_on_the_same_database_is_refused(make_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import fresh_postgres_database

    def second_master(data_dir: Path, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
        args = [sys.executable, "-m", "titan", "master", "--port", str(free_port()),
                "--dashboard-port", str(free_port()), "--data-dir", str(data_dir)]
        if database_url:
            # On PostgreSQL a second master waits as a standby unless told not to
            # (tests/integration/test_standby_masters.py covers the standby).
            args += ["--database-url", database_url, "--no-standby"]
        return subprocess.run(args, capture_output=True, text=True, timeout=60)

    first = make_cluster().start_master()
    out = second_master(first.data)
    assert out.returncode == 1 and "another Titan master" in out.stderr
    assert "Traceback" not in out.stderr
    with fresh_postgres_database("titan_two_masters") as url:
        make_cluster(database_url=url).start_master()
        out = second_master(tmp_path / "elsewhere", url)
        assert out.returncode == 1 and "another Titan master" in out.stderr


def test_dashboard_prints_a_working_sign_in_link(cluster: Cluster) -> None:
    # On the dashboard's port, the banner's (it was the API's: a browser signed in again
    # there, its tabs on the banner's address were left without their write key).
    dashboard = f"http://127.0.0.1:{cluster.dashboard_port}"
    link = titan(cluster, "dashboard", "/agents").stdout.strip()
    assert link.startswith(f"{dashboard}/login?token=") and link.endswith("next=%2Fagents")
    # The page without its slash is the same page; --json gives the link as JSON.
    assert titan(cluster, "dashboard", "agents").stdout.strip() == link
    assert json.loads(titan(cluster, "dashboard", "agents", "--json").stdout)["url"] == link

    with httpx.Client(timeout=10) as browser:
        reply = browser.get(link)
        signed_in_reply(reply)  # the cookie, and the write key for the browser's storage
        assert next_of(reply) == "/agents"
        landed = browser.get(f"{dashboard}/agents")
        assert landed.status_code == 200 and landed.url.path == "/agents", landed.url

    # The master says where: its dashboard's port at the host it was asked by, and nothing
    # for a port not its own (a tunnel's, a proxy's: what answers on the other is unknown).
    me = cluster.api("GET", "/whoami")
    assert me == {"role": "admin", "name": "admin (titan up)", "dashboard": True,
                  "dashboard_url": dashboard,
                  "token_id": me["token_id"]} and me["token_id"].startswith("tok-")
    asked = {"localhost": None,  # port 80
             f"localhost:{cluster.port}": f"http://localhost:{cluster.dashboard_port}",
             f"127.0.0.1:{cluster.dashboard_port}": dashboard,
             f"127.0.0.1:{free_port()}": None}
    for host, url in asked.items():
        said = httpx.get(f"{cluster.url}/api/v1/whoami", headers={
            "Host": host, "Authorization": f"Bearer {cluster.admin_token}"}, timeout=10)
        assert said.status_code == 200 and said.json()["dashboard_url"] == url, \
            (host, said.text)

    # A token that cannot sign in (a worker's): its link answered 401, and rc was 0.
    worker_token = (cluster.data / "worker.token").read_text().strip()
    assert cluster.api("GET", "/whoami", token=worker_token)["dashboard"] is False
    out = titan(cluster, "dashboard", token=worker_token, check=False)
    assert out.returncode == 1 and out.stdout == "", out.stdout
    assert "this worker token cannot sign in to the dashboard: use an admin, operator or " \
        "viewer token" in out.stderr, out.stderr
    viewer = json.loads(titan(cluster, "token", "create", "--role", "viewer", "--json").stdout)
    assert titan(cluster, "dashboard", token=viewer["token"]).stdout.startswith(
        f"{dashboard}/login?token={viewer['token']}")
    # --open where no browser can be opened says so (the link was printed, nothing else).
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token, BROWSER="false")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    opened = subprocess.run([sys.executable, "-m", "titan", "dashboard", "--open"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert opened.returncode == 0 and opened.stdout.strip() == link.replace("next=%2Fagents",
                                                                            "next=%2F")
    assert "could not open a web browser on this machine" in opened.stderr, opened.stderr


def test_dashboard_open_hands_the_browser_a_one_time_code_not_the_token(
        cluster: Cluster, tmp_path: Path) -> None:
    # The browser's command line is every local user's to read while it runs (ps,
    # /proc/<pid>/cmdline): the admin token was there, for as long as the browser lived.
    said = tmp_path / "browser-argv"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {said}\n')
    browser.chmod(0o755)
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token, BROWSER=f"{browser} %s")
    opened = subprocess.run([sys.executable, "-m", "titan", "dashboard", "--open", "runs"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.strip().startswith(f"http://127.0.0.1:{cluster.dashboard_port}/login"
                                            f"?token={cluster.admin_token}")  # the terminal's
    handed = said.read_text()
    assert cluster.admin_token not in handed and "token" not in handed, handed
    assert handed.startswith(f"http://127.0.0.1:{cluster.dashboard_port}/login?code=sc_"), handed
    assert opened.stderr == "", opened.stderr
    with httpx.Client(timeout=10) as first, httpx.Client(timeout=10) as second:
        reply = first.get(handed, headers={"Sec-Fetch-Site": "none"})
        signed_in_reply(reply)
        assert next_of(reply) == "/runs"
        assert first.get(f"http://127.0.0.1:{cluster.dashboard_port}/runs").status_code == 200
        # Once: whoever reads it later gets nothing, and is told why.
        again = second.get(handed)
        assert again.status_code == 401 and "used already" in again.text, again.text[:300]
        # A page elsewhere may not spend one: the form asks first, holding the code.
        fresh = cluster.api("POST", "/sign-in-codes")
        assert fresh["expires_in"] == 60 and fresh["code"].startswith("sc_")
        asked = second.get(f"http://127.0.0.1:{cluster.dashboard_port}/login",
                           params={"code": fresh["code"]},
                           headers={"Sec-Fetch-Site": "cross-site"})
        assert asked.status_code == 200 and "opened from another site" in asked.text
        assert "titan_session=" not in asked.headers.get("set-cookie", "")
        assert f'name="code" value="{fresh["code"]}"' in asked.text
        posted = second.post(f"http://127.0.0.1:{cluster.dashboard_port}/login",
                             data={"code": fresh["code"], "next": "/"},
                             headers={"Sec-Fetch-Site": "same-origin"})
        signed_in_reply(posted)
    # Only a token that can sign in makes one.
    worker_token = (cluster.data / "worker.token").read_text().strip()
    refused = httpx.post(f"{cluster.url}/api/v1/sign-in-codes", timeout=10,
                         headers={"Authorization": f"Bearer {worker_token}"})
    assert refused.status_code == 403 and "cannot sign in" in refused.text, refused.text


def test_dashboard_links_to_the_api_port_of_a_master_without_a_dashboard_port(
        make_cluster: Any) -> None:
    # --dashboard-port 0: the API's port is the dashboard's, and the only one there is.
    master = make_cluster().start_master(["--dashboard-port", "0"])
    assert master.api("GET", "/whoami")["dashboard_url"] is None
    link = titan(master, "dashboard").stdout.strip()
    assert link.startswith(f"{master.url}/login?token=") and link.endswith("next=%2F")
    with httpx.Client(timeout=10) as browser:
        signed_in_reply(browser.get(link))
        assert browser.get(f"{master.url}/").status_code == 200


ESCAPES = ("import sys\n"
           "print('\\x1b]0;PWNED\\x07 \\x1b[2J\\x1b[31mred\\x1b[0m \\x1b]52;c;ZWNobw==\\x07')\n"
           "sys.exit('\\x1b]0;TITLE\\x07 failed')\n")


def test_a_jobs_escape_sequences_never_reach_a_terminal(cluster: Cluster) -> None:
    # A log or an error could set the reader's window title, clear the screen or write the
    # clipboard (OSC 52). On a terminal every control but colours is shown escaped; piped,
    # the log keeps its bytes as written.
    client = cluster.client()
    client.submit_job(TitanJob(job_id="escapes", filename=cluster.script("esc.py", ESCAPES)))
    assert client.wait("escapes", timeout=60)["state"] == "FAILED"

    def on_a_terminal(*args: str) -> str:
        main, child = pty.openpty()
        env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
                   TITAN_TOKEN=cluster.admin_token)
        proc = subprocess.Popen([sys.executable, "-m", "titan", *args], stdout=child,
                                stderr=child, env=env, cwd=cluster.root)
        os.close(child)
        out = b""
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not data:
                break
            out += data
        os.close(main)
        proc.wait(timeout=60)
        return out.decode(errors="replace")

    shown = on_a_terminal("logs", "escapes") + on_a_terminal("status", "escapes")
    assert "\x1b]" not in shown and "\x1b[2J" not in shown and "\x07" not in shown, shown
    assert "\\e]0;PWNED\\x07" in shown and "\x1b[31mred\x1b[0m" in shown
    assert "\\e]0;TITLE" in shown  # the job's error, in `titan status`
    piped = titan(cluster, "logs", "escapes").stdout
    assert "\x1b]0;PWNED\x07" in piped


HOSTILE_AGENT = r"""
import titan
try:
    with titan.trace.run("esc-bot") as run:
        raise RuntimeError("boom \x1b]0;PWNED\x07 \x1b]52;c;cm0gLXJmIH4K\x07 \x1b[2J cleared")
except RuntimeError:
    pass
titan.trace.flush(10)
print(run.id)
"""


def test_a_runs_error_never_reaches_the_terminal_raw(cluster: Cluster) -> None:
    # `titan runs show` printed a run's error (an agent's exception text) as written: an OSC
    # title, a clipboard write (OSC 52) and a clear-screen reached its reader's terminal.
    # Shown escaped as `titan status JOB` shows a job's; --json keeps the text exact.
    env = dict(os.environ, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    done = subprocess.run([sys.executable, cluster.script("esc_agent.py", HOSTILE_AGENT)],
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    run_id = done.stdout.strip().splitlines()[-1]
    deadline = time.monotonic() + 20
    while cluster.api("GET", f"/runs/{run_id}")["status"] == "running":
        assert time.monotonic() < deadline, f"run {run_id} never ended"
        time.sleep(0.1)
    shown = titan(cluster, "runs", "show", run_id).stdout
    assert "\x1b" not in shown and "\x07" not in shown, shown
    assert "boom \\e]0;PWNED\\x07 \\e]52;c;cm0gLXJmIH4K\\x07 \\e[2J cleared" in shown, shown
    exact = json.loads(titan(cluster, "runs", "show", run_id, "--json").stdout)
    assert "\x1b]0;PWNED\x07" in exact["run"]["error"]


def test_cancel_wait_and_retry_refuse_a_reference_that_names_a_job_and_a_dag(
        cluster: Cluster) -> None:
    # `titan cancel training` cancelled a job named "training" of another DAG, and the DAG
    # "training" ran on.
    slow = cluster.script("slow_amb.py", "import time\ntime.sleep(60)\n")
    client = cluster.client()
    client.submit_dag("training", [TitanJob(job_id="prep", filename=slow)])
    client.submit_dag("nightly_amb", [TitanJob(job_id="training", filename=slow)])
    said = titan(cluster, "cancel", "training", check=False)
    assert said.returncode == 1 and "names both the DAG training#1 and the job " \
        "nightly_amb#1/training" in said.stderr, said.stderr
    assert client.get_job("nightly_amb/training")["state"] in ("READY", "RUNNING", "PENDING")
    titan(cluster, "cancel", "DAG-training")
    titan(cluster, "cancel", "nightly_amb/training")
    assert client.get_dag("training")["status"] == "CANCELLED"
    # wait("training") returned the other DAG's job, as cancel cancelled it: refused alike.
    client.submit_dag("training", [TitanJob(job_id="prep", filename=slow)])
    with pytest.raises(AmbiguousRef, match="'training' names both the DAG training#2 and "
                       "the job nightly_amb#1/training: wait 'DAG-training' for the DAG"):
        client.wait("training", timeout=5)
    said = titan(cluster, "status", "training", check=False)
    assert said.returncode == 1 and "status 'DAG-training' for the DAG" in said.stderr
    client.cancel("DAG-training")
    # A DAG named as its job (`titan submit x.py`): the name is the job, as documented;
    # DAG-name the DAG.
    client.submit_dag("solo_amb", [TitanJob(job_id="solo_amb", filename=slow)])
    assert titan(cluster, "cancel", "solo_amb").stdout == "solo_amb#1/solo_amb: CANCELLED\n"
    assert client.wait("solo_amb", timeout=30)["state"] == "CANCELLED"
    assert client.wait("DAG-solo_amb", timeout=30)["status"] == "CANCELLED"
    # A numeric id too: jobs and DAGs are numbered apart, and cancel(dag["id"]) cancelled the
    # job of that number in another DAG. Three jobs in one DAG make job ids pass DAG ids.
    client.submit_dag("wide_amb", [TitanJob(job_id=f"w{i}", filename=slow) for i in range(3)])
    late = client.submit_dag("late_amb", [TitanJob(job_id="l", filename=slow)])
    namesake = client.get_job(late["id"])
    assert namesake["dag_id"] != late["id"]
    with pytest.raises(AmbiguousRef, match="is both the id of the DAG late_amb#1"):
        client.cancel(late["id"])
    # wait(dag["id"]) returned at once with that other job: refused the same way.
    with pytest.raises(ValidationFailed, match="wait 'late_amb#1' for the DAG"):
        client.wait(late["id"], timeout=5)
    with pytest.raises(ValidationFailed):
        client.wait(str(late["id"]), timeout=5)
    assert client.get_job(late["id"])["state"] == namesake["state"]  # untouched
    assert client.cancel(late["ref"])["status"] == "CANCELLED"
    client.cancel("DAG-wide_amb")


def test_a_project_folder_uploaded_from_the_shell_runs_archive_jobs(cluster: Cluster,
                                                                    tmp_path: Path) -> None:
    # Archive jobs (`is_archive: true`) need their project on the master: only the SDK could
    # upload one, so a pipeline of them could not be run from the shell alone.
    project = tmp_path / "proj"
    (project / "lib").mkdir(parents=True)
    (project / "lib" / "__init__.py").write_text("")
    (project / "lib" / "words.py").write_text("GREETING = 'hello from the project'\n")
    (project / "main.py").write_text("from lib.words import GREETING\nprint(GREETING)\n")
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "junk.pyc").write_bytes(b"\0")
    out = titan(cluster, "files", "upload", str(project), "--name", "cliproj")
    assert "uploaded cliproj.zip" in out.stdout and "`file: cliproj/<entry.py>`" in out.stdout
    (tmp_path / "archive.yaml").write_text(
        "name: cli-archive\njobs:\n  - id: main\n    file: cliproj/main.py\n"
        "    is_archive: true\n")
    done = titan(cluster, "submit", str(tmp_path / "archive.yaml"), "--wait", "--timeout", "60")
    assert "COMPLETED" in done.stdout, done.stdout + done.stderr
    logs = titan(cluster, "logs", "cli-archive/main")
    assert "hello from the project" in logs.stdout
    listed = titan(cluster, "files", "list", "--json")
    assert "cliproj.zip" in [f["name"] for f in json.loads(listed.stdout)["files"]]
    got = titan(cluster, "files", "get", "cliproj.zip", "-o", str(tmp_path / "back.zip"))
    assert got.stdout.strip() == str(tmp_path / "back.zip")
    with zipfile.ZipFile(tmp_path / "back.zip") as zf:
        assert sorted(zf.namelist()) == ["lib/__init__.py", "lib/words.py", "main.py"]
    # `download`, as `titan --help` said the action was, is `get`.
    again = titan(cluster, "files", "download", "cliproj.zip", "-o", str(tmp_path / "dl.zip"))
    assert (tmp_path / "dl.zip").read_bytes() == (tmp_path / "back.zip").read_bytes(), again
    # A file keeps its name: --name is for folders.
    (tmp_path / "notes.txt").write_text("n\n")
    refused = titan(cluster, "files", "upload", str(tmp_path / "notes.txt"), "--name", "x",
                    check=False)
    assert refused.returncode != 0 and "--name names a project folder" in refused.stderr
    assert "uploaded notes.txt" in titan(cluster, "files", "upload",
                                          str(tmp_path / "notes.txt")).stdout


def test_workers_lists_jobs_no_worker_can_run_as_a_table(cluster: Cluster) -> None:
    """`titan workers` printed each such job as a Python dict (a QA pass)."""
    script = cluster.script("nowhere.py", "print('never')\n")
    client = cluster.client()
    dag = client.submit_dag("cli_nowhere", [TitanJob(job_id="stuck", filename=script,
                                                     requirement="CLI_NOWHERE")])
    try:
        deadline = time.monotonic() + 10
        while not any(w["requirement"] == "CLI_NOWHERE"
                      for w in client.get_workers()["unschedulable"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        out = titan(cluster, "workers").stdout
        assert "waiting for a capability no live worker offers:" in out, out
        (row,) = [line for line in out.splitlines() if "CLI_NOWHERE" in line]
        assert row.split()[:2] == [f"cli_nowhere#{dag['run']}/stuck", "CLI_NOWHERE"], out
        assert "{'" not in out
    finally:
        client.cancel(dag["ref"])


def test_status_of_a_dag_says_why_a_job_waits(cluster: Cluster) -> None:
    """`titan status dag/job` said a PENDING job's reason; `titan status DAG` showed only its
    state, so a job no worker could ever run looked like one about to start."""
    script = cluster.script("nowhere2.py", "print('never')\n")
    client = cluster.client()
    dag = client.submit_dag("cli_why", [TitanJob(job_id="stuck", filename=script,
                                                 requirement="CLI_WHY")])
    try:
        deadline = time.monotonic() + 10
        while not client.get_job(f"{dag['ref']}/stuck").get("reason"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        reason = client.get_job(f"{dag['ref']}/stuck")["reason"]
        job_out = titan(cluster, "status", f"{dag['ref']}/stuck").stdout
        assert f"reason:      {reason}" in job_out, job_out
        out = titan(cluster, "status", f"DAG-{dag['ref']}").stdout
        assert f"stuck is PENDING: {reason}" in out and "CLI_WHY" in reason, out
    finally:
        client.cancel(dag["ref"])


def test_workers_shows_versions_and_running_jobs_and_clips_a_long_name(
        make_cluster: Any, tmp_path: Path) -> None:
    # A fleet half upgraded went unnoticed (the version only in the User-Agent); RUNNING
    # showed internal job ids ([37]); a worker may name itself with 200 characters, printed
    # whole (a fleet QA pass).
    c = make_cluster()
    c.start_master()
    old = tmp_path / "old"
    old.mkdir()
    (old / "sitecustomize.py").write_text(
        "import titan.version\ntitan.version.__version__ = '0.0.9'\n")
    path = os.pathsep.join(p for p in (str(old), os.environ.get("PYTHONPATH")) if p)
    c.add_worker(capabilities="OLDV", slots=1, name="N" * 200, env={"PYTHONPATH": path})
    c.add_worker(capabilities="NEWV", slots=1, name="current")
    client = c.client()
    slow = c.script("slow_v.py", "import time\ntime.sleep(60)\n")
    dag = client.submit_dag("vers", [TitanJob(job_id="long", filename=slow, requirement="OLDV")])
    deadline = time.monotonic() + 30
    while client.get_job("vers/long")["state"] != "RUNNING":
        assert time.monotonic() < deadline, c.log()
        time.sleep(0.05)
    try:
        info = json.loads(titan(c, "workers", "--json").stdout)
        master = info["version"]
        by_name = {w["name"]: w for w in info["workers"]}
        assert by_name["N" * 200]["version"] == "0.0.9" and master != "0.0.9"
        assert by_name["current"]["version"] == master
        assert by_name["N" * 200]["running_refs"] == [f"vers#{dag['run']}/long"]
        out = titan(c, "workers").stdout
        (old_row,) = [line for line in out.splitlines() if "OLDV" in line]
        assert "N" * 31 + "…" in old_row and "N" * 32 not in old_row, out
        assert " 0.0.9 * " in old_row and f" vers#{dag['run']}/long " in old_row, out
        (new_row,) = [line for line in out.splitlines() if "NEWV" in line]
        assert f" {master} " in new_row and "*" not in new_row and " - " in new_row, out
        assert f"* not this master's version ({master})" in out
        log = c.log()
        assert log.count(f"runs Titan 0.0.9, this master {master}") == 1, log
        assert "runs Titan " + master not in log
        with httpx.Client(base_url=c.url, timeout=30,
                          headers={"Authorization": f"Bearer {c.admin_token}"}) as s:
            page = s.get(f"http://127.0.0.1:{c.dashboard_port}/workers").text
        assert f'warn-text" title="this master runs Titan {master}' in page
        assert "Titan 0.0.9</span>" in page
    finally:
        client.cancel(dag["ref"])


def test_the_banner_keeps_the_admin_token_out_of_a_log(cluster: Cluster) -> None:
    """A master whose output goes to a file (systemd's journal, `docker logs`: the deployment
    recipes) wrote its admin token there in the one-click link (a QA pass). Off a terminal,
    the banner names the dashboard and `titan dashboard`, which prints the link on demand."""
    log = (cluster.root / "master.log").read_text(errors="replace")
    dashboard = [line for line in log.splitlines() if line.startswith("Dashboard")]
    assert dashboard and "titan dashboard" in dashboard[0], log[-2000:]
    assert "token=" not in log and cluster.admin_token not in log


def test_the_banners_url_is_one_clients_take(cluster: Cluster) -> None:
    # The banner printed http://HOST:PORT/api/v1, which --master, TITAN_URL, TitanClient(url=)
    # and `titan worker --master` all refused ("without a path"): it prints the root now,
    # and the API's base names the master too.
    log = (cluster.root / "master.log").read_text(errors="replace")
    banner = re.search(r"^Titan master  (\S+)", log, re.M)
    assert banner is not None and banner[1] == cluster.url, log[-2000:]
    for url in (cluster.url, f"{cluster.url}/api/v1", f"{cluster.url}/api/v1/"):
        assert "found in arguments" in titan(cluster, "status", "--master", url).stdout
        env = dict(cluster.env, TITAN_URL=url, TITAN_TOKEN=cluster.admin_token)
        out = subprocess.run([sys.executable, "-m", "titan", "status"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "found in TITAN_URL" in out.stdout, out.stderr
        assert TitanClient(url=url, token=cluster.admin_token).health()["status"] == "ok"
    out = titan(cluster, "status", "--master", f"{cluster.url}/api/v2", check=False)
    assert out.returncode == 1 and "give the server's root URL, without a path" in out.stderr
    worker = cluster.add_worker(capabilities="APIBASE", slots=1,
                                master_url=f"{cluster.url}/api/v1")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)


def test_workers_gone_a_week_leave_the_list(make_cluster: Any) -> None:
    """Every restart and --burst run registered a worker that stayed listed for ever (a QA
    pass): a master forgets the ones stopped or lost more than a week ago."""
    c = make_cluster(lease_seconds=3.0)
    c.start_master()
    old = c.add_worker(name="old-box", slots=1)
    c.add_worker(name="recent-box", slots=1)
    old.terminate()
    old.wait(timeout=30)
    client = c.client()
    deadline = time.monotonic() + 30
    while [w["state"] for w in client.list_workers() if w["name"] == "old-box"] != ["stopped"]:
        assert time.monotonic() < deadline, client.list_workers()
        time.sleep(0.1)
    c.kill_master()
    db = sqlite3.connect(c.data / "titan.db")
    with db:
        db.execute("UPDATE workers SET last_seen_at = ? WHERE name = 'old-box'",
                   (time.time() - 8 * 86400,))
    db.close()
    c.start_master()
    client = c.client()
    deadline = time.monotonic() + 30
    while any(w["name"] == "old-box" for w in client.list_workers()):
        assert time.monotonic() < deadline, client.list_workers()
        time.sleep(0.2)
    assert "old-box" not in titan(c, "workers").stdout
    assert any(w["name"] == "recent-box" for w in client.list_workers())


def test_workers_of_an_earlier_master_are_unknown_for_a_lease_then_lost(
        make_cluster: Any) -> None:
    """After a failover the rows' last sightings are the old leader's, written a while ago:
    live workers showed as lost while they came over (an ops QA pass). A worker the database
    says is live gets a lease period from the new master's start before it is called lost."""
    c = make_cluster(lease_seconds=5.0)
    c.start_master()
    worker = c.add_worker(name="was-live", slots=1)
    worker.kill()
    worker.wait()
    c.kill_master()  # its row still says live
    db = sqlite3.connect(c.data / "titan.db")
    with db:
        db.execute("UPDATE workers SET last_seen_at = ? WHERE name = 'was-live'",
                   (time.time() - 60,))
    db.close()
    c.start_master()
    client = c.client()
    states = [w["state"] for w in client.list_workers() if w["name"] == "was-live"]
    assert states == ["unknown"], states
    deadline = time.monotonic() + 30
    while [w["state"] for w in client.list_workers() if w["name"] == "was-live"] != ["lost"]:
        assert time.monotonic() < deadline, client.list_workers()
        time.sleep(0.2)


def test_runs_export_writes_the_format_its_file_is_named_for(cluster: Cluster,
                                                             tmp_path: Path) -> None:
    """`titan runs export -o runs.csv` wrote JSON lines into runs.csv (the default format
    whatever the name); the file's extension now picks the format when --format is left
    out, and --format takes seed 004's spelling (CSV) too."""
    client = cluster.client()
    client.api("POST", "/runs", json={"id": "export-by-name", "agent_id": "export-agent"})
    client.api("POST", "/runs/export-by-name/actions",
               json={"actions": [{"name": "lookup", "inputs": {"q": 1}}]})
    wanted = {"runs.csv": "run_id,", "RUNS.CSV": "run_id,", "runs.json": '{"runs":',
              "runs.jsonl": '{"type":"run"', "runs.ndjson": '{"type":"run"',
              "runs.txt": '{"type":"run"'}
    for name, first in wanted.items():
        out = tmp_path / name
        titan(cluster, "runs", "export", "--q", "export-by-name", "-o", str(out))
        assert out.read_text().startswith(first), (name, out.read_text()[:200])
    # Said outright, the format wins over the name; in any case.
    out = tmp_path / "named.csv"
    titan(cluster, "runs", "export", "--q", "export-by-name", "--format", "JSON", "-o", str(out))
    assert json.loads(out.read_text())["runs"][0]["id"] == "export-by-name"
    stdout = titan(cluster, "runs", "export", "--q", "export-by-name", "--format", "CSV").stdout
    assert stdout.startswith("run_id,"), stdout[:200]
    # One run by its id, as `titan runs show RUN` names it; a run that does not exist is
    # said, and no file is written.
    client.api("POST", "/runs", json={"id": "export-by-name-2", "agent_id": "export-agent"})
    one = titan(cluster, "runs", "export", "export-by-name", "--no-actions").stdout
    assert [json.loads(line)["id"] for line in one.splitlines()] == ["export-by-name"]
    missing = titan(cluster, "runs", "export", "no-such-run", "-o", str(tmp_path / "m.jsonl"),
                    check=False)
    assert missing.returncode == 1 and "no agent run 'no-such-run'" in missing.stderr
    assert not (tmp_path / "m.jsonl").exists()


def test_output_paths_that_are_not_plain_files(cluster: Cluster, tmp_path: Path) -> None:
    """-o into a pipe or a device link writes into it (it was replaced by a plain file); a
    path that cannot be written is one error line, not a traceback."""
    titan(cluster, "store", "put", "o-key", "v")
    link = tmp_path / "null"
    link.symlink_to("/dev/null")
    out = titan(cluster, "runs", "export", "-o", str(link))
    assert link.is_symlink(), out.stdout + out.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    titan(cluster, "files", "upload", str(blocker))
    for argv in (["runs", "export", "-o", str(blocker / "x.jsonl")],
                 ["files", "get", "a-file", "-o", str(blocker / "x")]):
        out = titan(cluster, *argv, check=False)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.startswith("error: "), out.stderr


def test_json_is_json_for_budgets_and_downloads(cluster: Cluster, tmp_path: Path) -> None:
    src = tmp_path / "j.txt"
    src.write_text("hello")
    titan(cluster, "files", "upload", str(src))
    got = json.loads(titan(cluster, "files", "get", "j.txt", "-o", str(tmp_path / "o.txt"),
                           "--json").stdout)
    assert got == {"name": "j.txt", "path": str(tmp_path / "o.txt")}
    budget = json.loads(titan(cluster, "runs", "budget", "--agent", "json-agent", "2.5",
                              "--json").stdout)
    assert budget["budget_usd"] == 2.5


def test_logs_of_a_dag_name_says_it_is_a_dag_and_names_its_jobs(cluster: Cluster) -> None:
    # `titan logs nightly` (a DAG, as `titan status nightly` shows) answered "no job
    # 'nightly'": the user was told the thing they had just submitted did not exist.
    one = cluster.script("logs_dag_one.py", "print('one')\n")
    client = cluster.client()
    dag = client.submit_dag("logs_dag_pipe", [TitanJob("extract", one),
                                              TitanJob("train", one, parents=["extract"])],
                            wait=True, timeout=60)
    assert dag["status"] == "COMPLETED", dag
    for ref in ("logs_dag_pipe", "DAG-logs_dag_pipe", "logs_dag_pipe#1"):
        out = titan(cluster, "logs", ref, check=False)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.startswith(f"error: no job {ref!r}: it names DAG logs_dag_pipe#1"), \
            out.stderr
        assert "extract, train" in out.stderr and "'logs_dag_pipe#1/extract'" in out.stderr
        # The same for the SDK, and the reply still a NotFound a caller may catch.
        with pytest.raises(NotFound, match="it names DAG logs_dag_pipe#1") as got:
            client.fetch_logs(ref)
        assert got.value.details["dag"] == "logs_dag_pipe#1"
    # A name that is nothing at all is still said as before.
    out = titan(cluster, "logs", "logs_dag_nothing", check=False)
    assert out.stderr == "error: no job 'logs_dag_nothing'\n", out.stderr


def test_runs_show_actions_takes_what_the_master_can_list(cluster: Cluster) -> None:
    # `--actions 5000` failed with the API's words ("the query parameter 'limit' must be
    # less than or equal to 1000"), and `--actions -1` listed nothing without a word.
    agent = cluster.script("actions_bound_agent.py", (
        "import titan\n"
        "with titan.trace.run('actions-bound', run_id='actions-bound-1'):\n"
        "    for i in range(3):\n"
        "        with titan.trace.action(f'step{i}') as a:\n"
        "            a.outputs = i\n"
        "titan.trace.flush(10)\n"))
    env = dict(os.environ, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)
    subprocess.run([sys.executable, agent], env=env, timeout=120, check=True)
    for bad in ("-1", "1001", "many"):
        out = titan(cluster, "runs", "show", "actions-bound-1", "--actions", bad, check=False)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert (f"argument --actions: must be a whole number from 0 to 1000, got {bad!r}"
                in out.stderr), out.stderr
    shown = json.loads(titan(cluster, "runs", "show", "actions-bound-1", "--actions", "1000",
                             "--json").stdout)
    assert [a["name"] for a in shown["actions"]] == ["step0", "step1", "step2"]
    shown = json.loads(titan(cluster, "runs", "show", "actions-bound-1", "--actions", "2",
                             "--json").stdout)
    assert [a["name"] for a in shown["actions"]] == ["step1", "step2"]
    shown = json.loads(titan(cluster, "runs", "show", "actions-bound-1", "--actions", "0",
                             "--json").stdout)
    assert shown["actions"] == [] and shown["run"]["action_count"] == 3


def test_a_script_named_in_another_alphabet_keeps_its_name(cluster: Cluster,
                                                            tmp_path: Path) -> None:
    # `titan submit データ.py` and `titan submit отчёт.py` were both the DAG "script": every
    # script named without Latin letters ran as runs of one DAG, and `titan logs script`
    # showed whichever ran last. A job id may hold these letters; only what it may not
    # becomes '-' (cli.md), accented Latin letters still their base (Über.py: Uber).
    for file, name in (("データ.py", "データ"), ("отчёт v2.py", "отчёт-v2"),
                       ("हिन्दी.py", "हिन्दी"), ("Ωmega ✓.py", "Ωmega"),
                       ("a" * 220 + ".py", "a" * 200)):
        (tmp_path / file).write_text(f"print({name!r})\n")
        out = titan(cluster, "submit", file, "--wait", cwd=tmp_path)
        assert out.stdout.startswith(f"{name}#"), (file, out.stdout)
        assert titan(cluster, "logs", f"{name}/{name}").stdout.strip() == name


def test_a_file_that_is_no_script_says_why_it_was_read_as_a_pipeline(cluster: Cluster,
                                                                     tmp_path: Path) -> None:
    # `titan submit train` (a Python file without its .py) answered "train:1: the pipeline
    # must be a mapping of field: value": nothing said why a script was read as YAML.
    (tmp_path / "train").write_text("import os\nprint(os.getcwd())\n")
    (tmp_path / "data.bin").write_bytes(b"\x00\xaf\xfe binary")
    (tmp_path / "cfg.ini").write_text("a: 1\n")
    hint = ("(titan submit reads a file as a YAML pipeline unless it is named .py or .sh or "
            "is a program, beginning with #! or compiled)")
    for name, said in (("train", "train:1: the pipeline must be a mapping of field: value"),
                       ("data.bin", "data.bin: cannot read the pipeline file"),
                       ("cfg.ini", "cfg.ini:1: unknown field 'a'")):
        out = titan(cluster, "submit", name, check=False, cwd=tmp_path)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.startswith(f"error: {said}") and hint in out.stderr, out.stderr
    # A pipeline named as one, or one whose job is wrong, is said as before.
    (tmp_path / "p.yaml").write_text("- a\n")
    out = titan(cluster, "submit", "p.yaml", check=False, cwd=tmp_path)
    assert out.stderr == "error: p.yaml:1: the pipeline must be a mapping of field: value\n"
    (tmp_path / "p.txt").write_text("name: hint-txt\njobs:\n  - id: a\n    file: nope.py\n")
    out = titan(cluster, "submit", "p.txt", check=False, cwd=tmp_path)
    assert out.returncode == 1 and "nope.py" in out.stderr and hint not in out.stderr, \
        out.stderr
