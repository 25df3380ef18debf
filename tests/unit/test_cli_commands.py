"""The `titan` command: parsing, help, exit codes, and each command against a scripted master."""

from __future__ import annotations

import argparse
import json
import socket
import sys
import types
from pathlib import Path
from typing import Any

import httpx
import pytest

import titan.worker
from titan.cli import commands as cli
from titan.cli.parser import build_parser, main
from titan.client import TitanClient
from titan.client.transport import Transport


@pytest.fixture(autouse=True)
def isolated(clean_client_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tmp_path = clean_client_env
    return tmp_path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- parsing


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for name in ("up", "master", "worker", "submit", "status", "logs", "store", "cancel",
                 "retry", "workers", "token"):
        assert f"    {name}" in out


@pytest.mark.parametrize("argv", [
    ["up", "--help"], ["master", "--help"], ["worker", "--help"], ["submit", "--help"],
    ["status", "--help"], ["logs", "--help"], ["store", "get", "--help"],
    ["store", "keys", "--help"], ["token", "create", "--help"], ["workers", "--help"],
])
def test_subcommand_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(argv, capsys)
    assert code == 0 and "usage: titan" in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([], capsys)[0] == 2
    assert run(["frobnicate"], capsys)[0] == 2
    assert run(["token", "create", "--role", "god"], capsys)[0] == 2
    assert run(["store"], capsys)[0] == 2
    assert run(["logs"], capsys)[0] == 2
    code, _, err = run(["submit", "--wait"], capsys)  # it said "required: pipeline, ARG"
    assert code == 2 and "required: pipeline (a pipeline YAML file or a script)" in err, err
    # A script's own option before "--": "unrecognized arguments: --epochs" said nothing of
    # "--" (a docs walkthrough); the line that works is given.
    code, _, err = run(["submit", "train.py", "--wait", "--epochs", "3", "a b"], capsys)
    assert code == 2 and err.splitlines()[-1] == (
        "titan submit: error: unrecognized arguments: --epochs (a script's options go after "
        "--: titan submit --wait train.py -- --epochs 3 'a b')"), err
    # Bytes that are not UTF-8 (a filename, an argument): one line, not a traceback from the
    # JSON encoder.
    bad = b"bad\xff.py".decode("utf-8", "surrogateescape")
    for argv in (["submit", bad], ["status", bad], ["store", "put", bad, "v"]):
        code, _, err = run(argv, capsys)
        assert code == 2 and "is not UTF-8 text (b'bad\\xff.py')" in err, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("titan ")


def test_connection_options_before_or_after_the_command() -> None:
    parser = build_parser()
    a = parser.parse_args(["--port", "9191", "--json", "status", "x"])
    b = parser.parse_args(["status", "x", "--port", "9191", "--json"])
    c = parser.parse_args(["status", "x"])
    assert (a.port, a.json, a.ref) == (b.port, b.json, b.ref) == (9191, True, "x")
    assert (c.host, c.port, c.token, c.json) == (None, None, None, False)
    d = parser.parse_args(["store", "get", "k", "--token", "T"])
    assert (d.token, d.key) == ("T", "k")


def test_runs_export_includes_every_action_unless_told_not_to() -> None:
    # Seed 004: an export "includes runs and all actions"; --actions, once required, is kept.
    parser = build_parser()
    assert [parser.parse_args(["runs", "export", *flag]).actions
            for flag in ([], ["--actions"], ["--no-actions"])] == [True, True, False]


def test_master_may_be_repeated_or_comma_separated(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["status", "--master", "http://a:8765",
                              "--master", "http://b:8765,http://c:8765"])
    with cli._client(args) as client:
        assert client.endpoint.urls == ("http://a:8765", "http://b:8765", "http://c:8765")
        assert client.url == "http://a:8765"
    args = parser.parse_args(["--master", "http://a:8765", "workers"])
    with cli._client(args) as client:
        assert client.endpoint.urls == ("http://a:8765",)
    code, _, err = run(["status", "--master", "http://a:1", "--host", "b"], capsys)
    assert code == 1 and "not both" in err
    code, _, err = run(["status", "--master", "http://a:1,ftp://b:2"], capsys)
    assert code == 1 and "'ftp://b:2'" in err


def test_cli_module_imports_no_heavy_modules() -> None:
    # What every command imports before it runs: the parser, built and reading the command
    # line. orjson (through the ledger, for `titan runs verify`) was among it, and a Ctrl-C
    # while orjson loaded crashed `titan` with SIGSEGV (a QA pass).
    import subprocess

    code = ("import contextlib, sys, titan.cli\n"
            "with contextlib.redirect_stdout(None): titan.cli.main(['--version'])\n"
            "heavy = [m for m in ('httpx', 'titan.client', 'titan.master', 'fastapi', "
            "'sqlalchemy', 'orjson', 'titan.ledger', 'yaml', 'rich', 'logging') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("where", ["titan.cli.commands", "titan.cli.runs"])
def test_a_ctrl_c_while_titan_starts_exits_130_quietly(where: str) -> None:
    # A Ctrl-C while the command's modules load or its parser is built: a KeyboardInterrupt
    # traceback (or, inside orjson's loading, SIGSEGV). Sent here the moment `where` is
    # imported, as a real SIGINT.
    import subprocess

    code = ("import os, signal, sys\n"
            "class Interrupt:\n"
            "    def find_spec(self, name, *_):\n"
            f"        if name == {where!r}: os.kill(os.getpid(), signal.SIGINT)\n"
            "sys.meta_path.insert(0, Interrupt())\n"
            "from titan.cli import main\n"
            "sys.exit(main(['status']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (130, "", "")


# --------------------------------------------------------------------------- serving


def test_up_builds_the_master_config(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []
    fake: Any = types.ModuleType("titan.master.embedded")

    def run_up(config: Any, **kw: Any) -> int:
        calls.append((config, kw))
        return 0

    fake.run_up = run_up
    monkeypatch.setitem(sys.modules, "titan.master.embedded", fake)
    code, _, _ = run(["up", "--port", "9191", "--dashboard-port", "5001", "--data-dir", "d",
                      "--slots", "3", "--capabilities", "GPU, GENERAL"], capsys)
    assert code == 0
    config, kw = calls[0]
    assert (config.host, config.port, config.dashboard_port, config.data_dir,
            config.database_url) == ("127.0.0.1", 9191, 5001, "d", None)
    assert kw == {"slots": 3, "capabilities": ["GPU", "GENERAL"], "sandbox": False}


def test_master_runs_run_master(monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    fake: Any = types.ModuleType("titan.master.server")
    fake.run_master = lambda config: 7 if config.host == "0.0.0.0" else 0
    monkeypatch.setitem(sys.modules, "titan.master.server", fake)
    assert run(["master", "--host", "0.0.0.0", "--database-url", "sqlite:///x.db"],
               capsys)[0] == 7


def test_worker_gets_url_token_and_options(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def run_worker(*a: Any, **kw: Any) -> int:
        calls.append((a, kw))
        return 0

    monkeypatch.setattr(titan.worker, "run_worker", run_worker, raising=False)
    assert run(["worker", "--master", "http://10.0.0.2:9090", "--token", "wt",
                "--capabilities", "GPU,GENERAL", "--slots", "2", "--workdir", "/tmp/w",
                "--burst", "--name", "gpu-1", "--transport", "http"], capsys)[0] == 0
    assert calls[-1] == ((["http://10.0.0.2:9090"], "wt", ["GPU", "GENERAL"], 2, "/tmp/w"),
                         {"burst": True, "name": "gpu-1", "sandbox": False, "run_as": None,
                          "transport": "http", "executor": "local", "ray_address": None})
    monkeypatch.setenv("TITAN_TOKEN", "env-token")
    monkeypatch.setenv("TITAN_URL", "http://10.0.0.3:9090")
    assert run(["worker"], capsys)[0] == 0
    args, kw = calls[-1]
    # No capabilities or slots named: the worker asks its executor (GENERAL, the CPU count).
    assert args[:4] == (["http://10.0.0.3:9090"], "env-token", [], None)
    assert kw == {"burst": False, "name": None, "sandbox": False, "run_as": None,
                  "transport": "channel", "executor": "local", "ray_address": None}
    assert run(["worker", "--executor", "ray", "--ray-address", "10.0.0.5:6379"], capsys)[0] == 0
    assert calls[-1][1]["executor"] == "ray" and calls[-1][1]["ray_address"] == "10.0.0.5:6379"
    # Isolation and transport can come from the environment (a systemd unit's Environment=).
    monkeypatch.setenv("TITAN_SANDBOX", "1")
    monkeypatch.setenv("TITAN_RUN_AS", "nobody")
    monkeypatch.setenv("TITAN_WORKER_TRANSPORT", "http")
    assert run(["worker"], capsys)[0] == 0
    assert calls[-1][1] == {"burst": False, "name": None, "sandbox": True, "run_as": "nobody",
                            "transport": "http", "executor": "local", "ray_address": None}
    # TITAN_SANDBOX is a switch: "false" turned the sandbox on (anything but "" and "0" did).
    for value, on in (("true", True), ("ON", True), ("yes", True), ("false", False),
                      ("off", False), ("No", False), ("0", False), ("", False)):
        monkeypatch.setenv("TITAN_SANDBOX", value)
        assert run(["worker"], capsys)[0] == 0
        assert calls[-1][1]["sandbox"] is on, value
    assert run(["worker", "--sandbox"], capsys)[0] == 0 and calls[-1][1]["sandbox"] is True
    count = len(calls)
    for command in (["worker"], ["worker", "--sandbox"]):
        monkeypatch.setenv("TITAN_SANDBOX", "enabled")
        code, _, err = run(command, capsys)
        assert code == 1 and len(calls) == count, err
        assert err == ("error: TITAN_SANDBOX must be one of 1, true, yes, on (on) or 0, false, "
                       "no, off (off) (got 'enabled')\n")


def test_worker_token_advice_puts_the_environment_first(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # --token sits in /proc/<pid>/cmdline, which every local user reads: the missing-token
    # message said "pass --token", and a worker given one said nothing (a hostile QA pass).
    calls: list[Any] = []
    monkeypatch.setattr(titan.worker, "run_worker", lambda *a, **kw: calls.append(a) or 0,
                        raising=False)
    monkeypatch.delenv("TITAN_TOKEN", raising=False)
    monkeypatch.setenv("TITAN_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["worker", "--master", "http://10.0.0.2:9090"], capsys)
    assert code == 2 and calls == []
    assert err.startswith("error: no token for http://10.0.0.2:9090: "), err  # as every command
    assert err.index("set TITAN_TOKEN") < err.index("~/.titan/config.json") < err.index(
        "--token works too"), err
    assert '{"masters": {"http://10.0.0.2:9090": {"token": "..."}}}' in err
    code, _, err = run(["worker", "--master", "http://10.0.0.2:9090", "--token", "wt"], capsys)
    assert code == 0 and calls[-1][1] == "wt"  # it still works
    assert err.count("\n") == 1 and err.startswith(
        "warning: the token given with --token is readable by every user of this machine"), err
    assert "set TITAN_TOKEN instead" in err, err
    monkeypatch.setenv("TITAN_TOKEN", "wt")
    code, _, err = run(["worker", "--master", "http://10.0.0.2:9090"], capsys)
    assert code == 0 and calls[-1][1] == "wt" and "warning" not in err, err


# --------------------------------------------------------------------------- errors


def test_titan_errors_print_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = run(["status", "x", "--port", str(port)], capsys)
    assert code == 1
    assert err.startswith("error: cannot reach the Titan master")
    assert "Traceback" not in err


def test_bad_pipeline_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.yaml").write_text("jobs:\n  - id: a\n    file: a.py\n    colour: red\n")
    code, _, err = run(["submit", "p.yaml"], capsys)
    assert code == 1 and "p.yaml:4:" in err and "colour" in err


# --------------------------------------------------------------------------- commands


class Master:
    """A scripted master: routes -> replies, recording requests."""

    def __init__(self, routes: dict[str, Any]) -> None:
        self.routes = routes
        self.seen: list[str] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key = f"{request.method} {request.url.path.removeprefix('/api/v1')}"
        self.seen.append(key)
        self.bodies.append(request.read())
        reply = self.routes.get(key)
        if reply is None:
            return httpx.Response(404, json={"error": {"code": "not_found",
                                                       "message": f"no {key}"}})
        if isinstance(reply, httpx.Response):
            return reply
        return httpx.Response(200, json=reply)


@pytest.fixture
def master(monkeypatch: pytest.MonkeyPatch) -> Master:
    m = Master({})

    def fake_client(args: argparse.Namespace) -> TitanClient:
        client = TitanClient(host="127.0.0.1", port=9, token="t")
        client._transport = Transport(client.endpoint, http_transport=httpx.MockTransport(m))
        return client

    monkeypatch.setattr(cli, "_client", fake_client)
    return m


JOB = {"id": 3, "job_id": "train", "ref": "nightly#1/train", "state": "FAILED", "attempt": 2,
       "max_attempts": 2, "exit_code": 1, "error": "exit 1", "filename": "train.py",
       "args": ["--x"], "parents": ["extract"], "started_at": 100.0, "finished_at": 102.5}
DAG = {"id": 1, "name": "nightly", "run": 1, "ref": "nightly#1", "status": "PARTIAL",
       "counts": {"COMPLETED": 1, "FAILED": 1}, "agent_run_id": None,
       "jobs": [dict(JOB, job_id="extract", state="COMPLETED", exit_code=0), JOB]}


def test_status_job_then_dag(master: Master, capsys: pytest.CaptureFixture[str]) -> None:
    master.routes.update({"GET /jobs/train": JOB, "GET /dags/nightly": DAG})
    code, out, _ = run(["status", "train"], capsys)
    assert code == 0 and "FAILED" in out and "2/2" in out and "2.5s" in out
    code, out, _ = run(["status", "nightly"], capsys)
    assert code == 0
    assert out.splitlines()[0].startswith("DAG-nightly#1  PARTIAL  (COMPLETED 1, FAILED 1)")
    assert "extract" in out and "JOB" in out
    code, out, _ = run(["status", "nightly", "--json"], capsys)
    assert json.loads(out)["ref"] == "nightly#1"
    code, _, err = run(["status", "ghost"], capsys)
    assert code == 1 and "no job or DAG 'ghost'" in err


GATE = {"id": 7, "job_id": "build.approval", "ref": "ship#2/build.approval", "kind": "approval",
        "job_type": "APPROVAL", "state": "WAITING_APPROVAL", "reason": "waiting for approval",
        "hitl_message": "Ship it?", "attempt": 1, "max_attempts": 1, "parents": ["build"]}
GATED = {"id": 2, "name": "ship", "run": 2, "ref": "ship#2", "status": "RUNNING",
         "counts": {"COMPLETED": 1, "WAITING_APPROVAL": 1}, "agent_run_id": None,
         "jobs": [dict(JOB, job_id="build", state="COMPLETED", exit_code=0), GATE]}


def test_status_of_a_waiting_gate_says_how_to_decide_it(
        master: Master, capsys: pytest.CaptureFixture[str]) -> None:
    # As `titan submit --wait` says it: the question, and the command that answers it.
    command = "titan approve 'ship#2/build.approval' (or titan reject), or on the dashboard"
    master.routes.update({"GET /dags/ship": GATED, "GET /jobs/build.approval": GATE})
    code, out, _ = run(["status", "ship"], capsys)
    lines = out.splitlines()
    assert code == 0 and lines[-3:] == [
        "build.approval is WAITING_APPROVAL: waiting for approval", "    Ship it?",
        f"    decide: {command}"], out
    code, out, _ = run(["status", "build.approval"], capsys)
    assert code == 0 and "message:     Ship it?" in out and f"decide:      {command}" in out, out
    # Not in --json (one JSON document), nor for a gate already decided.
    code, out, _ = run(["status", "ship", "--json"], capsys)
    assert code == 0 and json.loads(out)["ref"] == "ship#2"
    master.routes["GET /jobs/build.approval"] = dict(GATE, state="APPROVED", reason=None)
    code, out, _ = run(["status", "build.approval"], capsys)
    assert code == 0 and "decide" not in out, out


def test_submit_wait_exit_code(master: Master, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.py").write_text("")
    (tmp_path / "p.yaml").write_text("name: nightly\njobs:\n  - {id: a, file: a.py}\n")
    master.routes.update({
        "POST /blobs/missing": {"missing": []},
        "POST /dags": httpx.Response(201, json=dict(DAG, status="WAITING")),
        "GET /dags/#1/wait": DAG,  # an id the client knows is sent as #N (never a name)
    })
    code, out, _ = run(["submit", "p.yaml"], capsys)
    assert (code, out) == (0, "nightly#1\n")
    code, out, _ = run(["submit", "p.yaml", "--wait", "--timeout", "5"], capsys)
    assert code == 1 and out.splitlines() == ["nightly#1", "PARTIAL (COMPLETED 1, FAILED 1)",
                                              "  train FAILED: exit 1"]
    master.routes["GET /dags/#1/wait"] = dict(DAG, status="COMPLETED")
    assert run(["submit", "p.yaml", "--wait"], capsys)[0] == 0


def test_submit_a_script_with_its_jobs_fields(master: Master, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # A GPU job, retries, a time limit, an environment: only a pipeline could say them.
    script = tmp_path / "train.py"
    script.write_text("")
    master.routes.update({"POST /blobs/missing": {"missing": []},
                          "POST /dags": httpx.Response(201, json=DAG)})
    code, _, err = run(["submit", str(script), "--name", "fit", "--requirement", "GPU",
                        "--retries", "2", "--job-timeout", "90", "--priority", "5",
                        "--env", "COLOR=blue", "--env", "EQ=a=b", "--runner", "subprocess",
                        "--", "--epochs", "3"], capsys)
    assert code == 0, err
    [job] = json.loads(master.bodies[master.seen.index("POST /dags")])["jobs"]
    assert {k: job.get(k) for k in ("job_id", "requirement", "retries", "timeout", "priority",
                                    "env", "runner", "args")} == {
        "job_id": "fit", "requirement": "GPU", "retries": 2, "timeout": 90.0, "priority": 5,
        "env": {"COLOR": "blue", "EQ": "a=b"}, "runner": "subprocess",
        "args": ["--epochs", "3"]}
    # Refused before anything is sent: a variable without '=', a pipeline's job fields.
    sent = len(master.seen)
    code, _, err = run(["submit", str(script), "--env", "COLOR"], capsys)
    assert code == 1 and "NAME=VALUE" in err
    (tmp_path / "p.yaml").write_text("name: nightly\njobs:\n  - {id: a, file: train.py}\n")
    code, _, err = run(["submit", str(tmp_path / "p.yaml"), "--retries", "1"], capsys)
    assert code == 1 and "--retries set a script's job" in err
    assert run(["submit", str(script), "--retries", "-1"], capsys)[0] == 2
    assert len(master.seen) == sent


def test_submit_wait_escapes_a_held_jobs_id_and_reason(
        capsys: pytest.CaptureFixture[str]) -> None:
    # A job id or the master's reason is anyone's text: an escape sequence in it is shown,
    # never sent to the terminal of whoever waits (it could clear or rewrite the screen).
    from titan.cli.submit import _wait_saying_why
    from titan.errors import WaitTimeout

    class Client:
        waits = 0

        def _wait_dag(self, ref: Any, timeout: float, until: Any, what: str) -> Any:
            self.waits += 1
            if self.waits == 1:
                raise WaitTimeout("a slice ran out")
            return {"status": "COMPLETED"}

        def dag_jobs(self, ref: Any, state: Any) -> Any:
            return {"jobs": [{"job_id": "a\x1b[2J", "state": "PENDING",
                              "reason": "no worker\x1b[2J\x1b]0;pwned\x07"}]}

    assert _wait_saying_why(Client(), 1, None, "d#1") == {"status": "COMPLETED"}
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err, err
    assert err == "  a\\e[2J is PENDING: no worker\\e[2J\\e]0;pwned\\x07\n"
    # So is a failed job's id in the lines that end the wait.
    from titan.cli.output import failed_jobs

    assert failed_jobs({"jobs": [{"job_id": "b\x1b[2J", "state": "FAILED", "error": "x"}]}) \
        == ["  b\\e[2J FAILED: x"]


def test_logs_follow_escapes_why_a_job_waits(master: Master,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    held = {"id": 3, "job_id": "j\x1b[2J", "ref": "d#1/j", "state": "PENDING",
            "reason": "no worker\x1b[2J"}
    master.routes.update({
        "GET /jobs/j": held, "GET /jobs/#3": dict(held, state="COMPLETED", reason=None),
        "GET /jobs/j/logs": {"attempt": 1, "next": 1, "done": True, "lines": []}})
    code, _, err = run(["logs", "j", "--follow"], capsys)
    assert code == 0 and err == "j\\e[2J is PENDING: no worker\\e[2J\n", err


def test_logs_and_follow(master: Master, capsys: pytest.CaptureFixture[str]) -> None:
    master.routes["GET /jobs/j/logs"] = {"attempt": 1, "next": 2, "done": True,
                                        "lines": [{"seq": 1, "line": "hello"},
                                                  {"seq": 2, "line": "world"}]}
    code, out, _ = run(["logs", "j"], capsys)
    assert (code, out) == (0, "hello\nworld\n")


def test_store_commands(master: Master, capsys: pytest.CaptureFixture[str]) -> None:
    master.routes.update({
        "GET /store/values/k": {"key": "k", "value": "v"},
        "GET /store/values/missing": {"key": "missing", "value": None},
        "PUT /store/values/k": {"key": "k", "value": "new"},
        "GET /store": {"keys": [{"key": "a"}, {"key": "b"}]},
    })
    assert run(["store", "get", "k"], capsys)[:2] == (0, "v\n")
    code, _, err = run(["store", "get", "missing"], capsys)
    assert code == 1 and "missing" in err
    assert run(["store", "put", "k", "new"], capsys)[0] == 0
    assert run(["store", "keys"], capsys)[:2] == (0, "a\nb\n")
    # The words other stores' CLIs use: `store set` was answered "did you mean 'get'?".
    assert run(["store", "set", "k", "new"], capsys)[0] == 0
    assert run(["store", "ls"], capsys)[:2] == (0, "a\nb\n")
    assert run(["store", "list"], capsys)[:2] == (0, "a\nb\n")
    master.routes["DELETE /store/values/k"] = {"key": "k", "deleted": True}
    for alias in ("rm", "del", "delete"):
        assert run(["store", alias, "k"], capsys)[0] == 0


def test_cancel_retry_workers_tokens(master: Master, capsys: pytest.CaptureFixture[str]) -> None:
    master.routes.update({
        "POST /dags/nightly/cancel": dict(DAG, status="CANCELLED"),
        "POST /jobs/train/retry": dict(JOB, state="PENDING"),
        "GET /workers": {"workers": [{"id": "w-1", "name": "box", "hostname": "box",
                                      "capabilities": ["GENERAL"], "slots": 4, "running": 1,
                                      "state": "ONLINE", "last_seen_at": 0}],
                         "queues": {"GPU": 2}, "unschedulable": []},
        "POST /tokens": {"id": 9, "token": "tk_secret", "role": "worker", "name": "gpu"},
        "GET /tokens": {"tokens": [{"id": 9, "role": "worker", "name": "gpu",
                                    "created_at": 0, "revoked_at": None}]},
    })
    assert run(["cancel", "nightly"], capsys)[:2] == (0, "nightly#1: CANCELLED\n")
    assert master.seen[-2:] == ["POST /jobs/nightly/cancel", "POST /dags/nightly/cancel"]
    assert run(["retry", "train"], capsys)[:2] == (0, "nightly#1/train: PENDING\n")
    code, out, _ = run(["workers"], capsys)
    assert code == 0 and "w-1" in out and "ready: GPU 2" in out
    assert run(["token", "create", "--role", "worker", "--name", "gpu"], capsys)[:2] == (
        0, "tk_secret\n")
    code, out, _ = run(["token", "list"], capsys)
    assert code == 0 and "worker" in out and "gpu" in out


def test_table_cells_never_send_control_characters_to_the_terminal(
        capsys: pytest.CaptureFixture[str]) -> None:
    from titan.cli.output import table

    # A token name or store key is anyone's text: an escape sequence or a bidirectional
    # override is shown, not obeyed.
    table(["NAME"], [["ok\x1b[2J\x1b]0;pwned\x07"], ["\u202eevil"], ["plain ✓"]])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "ok\\e[2J" in out and "\\u202eevil" in out and "plain ✓" in out


def test_a_very_long_cell_is_printed_whole_without_padding_every_row(
        capsys: pytest.CaptureFixture[str]) -> None:
    from titan.cli.output import MAX_PAD, table

    long_name = "n" * 200  # a DAG name may be 200 characters
    table(["DAG", "STATUS"], [["short", "COMPLETED"], [long_name, "FAILED"]])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "short".ljust(MAX_PAD) + "  COMPLETED"
    assert lines[2] == long_name + "  FAILED"  # whole, on its own row


def test_replay_options_out_of_range_are_refused_before_any_call(
        capsys: pytest.CaptureFixture[str]) -> None:
    # No master is listening on port 9: each is refused before a request is made.
    for argv, said in ((["replay", "R1", "--agent", "a"], "not both"),
                       (["replay", "--agent", "a", "--last", "0"], "--last must be 1"),
                       (["replay", "--agent", "a", "--threshold", "2"], "from 0 to 1"),
                       # --rows -1 printed the table less its last row and "… 7 more" of 6
                       (["replay", "R1", "--rows", "-1"], "--rows must be 0 or more, got -1")):
        assert main(["--port", "9", "--token", "t", *argv]) == 1
        assert said in capsys.readouterr().err


def test_an_unknown_argument_is_the_commands_error_with_its_usage(
        capsys: pytest.CaptureFixture[str]) -> None:
    # argparse handed unknown arguments up to `titan`'s own parser, whose usage names no
    # command: `titan logs --folow x` showed `usage: titan [-h] ... COMMAND`.
    from titan.cli.parser import main

    for argv, prog in ((["logs", "--folow", "x"], "titan logs"),
                       (["store", "get", "k", "--bogus"], "titan store get"),
                       (["status", "a", "b"], "titan status")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"usage: {prog} " in err and f"{prog}: error: unrecognized arguments" in err, err


def test_eval_trace_text_says_what_failed_and_prints_no_none(
        capsys: pytest.CaptureFixture[str]) -> None:
    # A failed run's own error was only in --json (the text showed the chip's general hint),
    # and a verdict without scores printed "completion None ... NOT_APPLICABLE".
    from titan.cli.evals import print_trace

    print_trace({
        "header": {"id": "r1", "status": "failed", "verdict": "NOT_APPLICABLE",
                   "cost": {"total_usd": 0.0}, "error_detail": "tool 'wipe' is not declared",
                   "chip": {"label": "proxy misconfigured", "hint": "wrong URL, token or run id"}},
        "completion_warning": None,
        "judge": {"verdict": "NOT_APPLICABLE", "task_completion": None,
                  "instruction_adherence": None, "efficiency": None,
                  "reasoning": "The run failed before it answered."},
        "timeline": [], "coding": None, "final_response": None})
    out = capsys.readouterr().out
    assert "error: tool 'wipe' is not declared" in out
    assert "verdict NOT APPLICABLE" in out and "judge: NOT APPLICABLE\n" in out
    assert "final response: (none)" in out and "None" not in out


HOSTILE = "boom \x1b]0;PWNED\x07 \x1b]52;c;cm0gLXJmIH4K\x07 \x1b[2J\u202eevil"


def assert_escaped(out: str) -> None:
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, out
    assert "boom \\e]0;PWNED\\x07 \\e]52;c;cm0gLXJmIH4K\\x07 \\e[2J\\u202eevil" in out, out


def test_eval_trace_and_replay_report_escape_what_an_agent_wrote(
        capsys: pytest.CaptureFixture[str]) -> None:
    # An agent's exception text, a judge's reasoning and an action's name reached the
    # terminal raw: a run could set its reader's window title, clear the screen or write the
    # clipboard (OSC 52). Shown escaped, as a table cell is; the lines of a traceback kept.
    from titan.cli.evals import print_trace
    from titan.cli.replay import _print_report

    print_trace({
        "header": {"id": "r1", "status": "failed", "verdict": "FAIL", "cost": {"total_usd": 0.0},
                   "error_detail": f"Traceback:\n{HOSTILE}", "chip": None},
        "completion_warning": HOSTILE,
        "judge": {"verdict": "FAIL", "reasoning": HOSTILE, "failure_mode": HOSTILE},
        "timeline": [], "coding": None, "final_response": None})
    out = capsys.readouterr().out
    assert_escaped(out)
    assert "error: Traceback:\nboom" in out  # its lines kept

    side = {"seq": 1, "inputs": HOSTILE, "cost_usd": 0.0}
    _print_report({
        "run_id": "rp", "replay_of": "r1", "status": "failed", "error": HOSTILE,
        "match_rate": 0.0, "original": side, "replay": side, "savings_usd": 0.0,
        "divergence_count": 1, "matched": 0, "recorded": 1, "fork": None,
        "divergences": [{"message": HOSTILE, "actor": "a", "channel": "tool", "name": HOSTILE,
                         "ordinal": 0, "original": side, "replay": side, "diff": []}],
        "comparison": [{"actor": "a", "name": HOSTILE, "ordinal": 0, "original": side,
                        "replay": side, "status": "diverged"}],
        "comparison_total": 1}, 10)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, out
    assert "❌ boom \\e]0;PWNED" in out


@pytest.mark.parametrize(("env", "said"), [
    ({"TITAN_LEASE_SECONDS": "abc"}, "TITAN_LEASE_SECONDS must be 1 to 3600 seconds, got 'abc'"),
    ({"TITAN_MAX_BODY_BYTES": "1GB"},
     "TITAN_MAX_BODY_BYTES must be 1024 to 1099511627776 bytes, got '1GB'$"),
    # Finite but huge: an OverflowError traceback (the MiB times 2**20 as an int), and a
    # 301-digit number said back; each setting now says its bounds.
    ({"TITAN_MAX_LOG_MB": "1e305"}, "TITAN_MAX_LOG_MB must be 0 to 1048576 MiB, got 1e\\+305$"),
    ({"TITAN_DEFAULT_RETRIES": "1e300"},
     "TITAN_DEFAULT_RETRIES must be a whole number 0 to 100, got 1e\\+300$"),
    ({"TITAN_DEFAULT_RETRIES": "2.5"},
     "TITAN_DEFAULT_RETRIES must be a whole number 0 to 100, got 2.5$"),
    ({"TITAN_MAX_UPLOAD_BYTES": "1e20"},
     "TITAN_MAX_UPLOAD_BYTES must be 1024 to 1099511627776 bytes, got 1e\\+20$"),
    ({"TITAN_IDEMPOTENCY_TTL": "1e308"},
     "TITAN_IDEMPOTENCY_TTL must be 0 to 2592000 seconds, got 1e\\+308$"),
    ({"TITAN_RETRY_BACKOFF": "61"}, "TITAN_RETRY_BACKOFF must be 0 to 60 seconds, got 61$"),
    ({"TITAN_AFFINITY_WAIT": "-1"}, "TITAN_AFFINITY_WAIT must be 0 to 3600 seconds, got -1$"),
    ({"TITAN_JOB_MAX_DELAY": "inf"},
     "TITAN_JOB_MAX_DELAY must be 0 to 31536000 seconds, got 'inf'$"),
    ({"TITAN_LEADER_TIMEOUT": "1e9"},
     "TITAN_LEADER_TIMEOUT must be 1 to 3600 seconds, got 1000000000$"),
    ({"TITAN_EVENTS_PING": "nan"}, "TITAN_EVENTS_PING must be 0.2 to 3600 seconds, got 'nan'$"),
    ({"TITAN_RUN_ALIVE_TIMEOUT": "0.5"},
     "TITAN_RUN_ALIVE_TIMEOUT must be 1 to 604800 seconds, got 0.5$"),
    ({"TITAN_LEASE_SECONDS": "0"}, "TITAN_LEASE_SECONDS must be 1 to 3600 seconds, got 0$"),
    # 1e300 was taken: every worker's heartbeat thread then died of an OverflowError.
    ({"TITAN_LEASE_SECONDS": "1e300"},
     "TITAN_LEASE_SECONDS must be 1 to 3600 seconds, got 1e\\+300$"),
    ({"TITAN_LEASE_SECONDS": "3601"}, "TITAN_LEASE_SECONDS must be 1 to 3600 seconds, got 3601$"),
])
def test_a_bad_master_setting_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch,
                                                     env: dict[str, str], said: str) -> None:
    # They were ValueError tracebacks, or (a lease of 0) accepted: every job then ran
    # attempt after attempt until it failed.
    from titan.errors import ConfigError
    from titan.master.config import MasterConfig

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=said):
        MasterConfig().check()


def test_an_advertised_api_base_url_is_read_as_the_masters_root() -> None:
    from titan.master.config import MasterConfig

    for given in ("http://titan.internal:9090/api/v1", "http://titan.internal:9090/api/v1/",
                  "http://titan.internal:9090/"):
        assert MasterConfig(advertise_url=given).public_url == "http://titan.internal:9090"


def test_a_data_dir_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    from titan.errors import ConfigError
    from titan.permissions import secure_tree
    from titan.storage import open_storage

    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="cannot create the directory .*: Not a directory"):
        secure_tree(tmp_path / "afile" / "data")
    with pytest.raises(ConfigError, match="cannot open the database at sqlite://x.db"):
        open_storage("sqlite://x.db")


def test_a_loose_tree_is_tightened_with_ten_paths_named_and_the_rest_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import os

    from titan.permissions import WARN_EACH, secure_tree

    root = tmp_path / "data"
    (root / "blobs").mkdir(parents=True)
    for i in range(40):
        (root / "blobs" / f"b{i}").write_text("x")
        os.chmod(root / "blobs" / f"b{i}", 0o644)
    os.chmod(root / "blobs", 0o755)
    with caplog.at_level("WARNING", logger="titan.permissions"):
        loosened = secure_tree(root)
    assert len(loosened) == 42  # the root, blobs/ and 40 files
    assert all(os.stat(p).st_mode & 0o077 == 0 for p in loosened)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == WARN_EACH + 1, said
    assert said[-1].startswith(f"{42 - WARN_EACH} more paths under {root} were open")


def test_only_titans_own_files_are_made_private(tmp_path: Path) -> None:
    # `titan up --data-dir .` in a repository took every file under it to 0600 (scripts and
    # git hooks stopped running) and a shared sticky directory to 0700 (a CLI QA pass).
    import os

    from titan.errors import ConfigError
    from titan.permissions import secure_tree

    repo = tmp_path / "repo"
    (repo / "bin").mkdir(parents=True)
    (repo / "bin" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(repo / "bin" / "run.sh", 0o755)
    os.chmod(repo, 0o755)
    with pytest.raises(ConfigError, match=r"repo is not a Titan directory: it holds bin, and "
                                          r"none of Titan's files"):
        secure_tree(repo)
    assert (os.stat(repo).st_mode & 0o777, os.stat(repo / "bin" / "run.sh").st_mode & 0o777) \
        == (0o755, 0o755)

    # A Titan data dir with something of the user's beside: only Titan's entries are closed.
    data = tmp_path / "data"
    (data / "blobs" / "ab").mkdir(parents=True)
    for path, mode in ((data / "admin.token", 0o644), (data / "notes.txt", 0o644),
                       (data / "blobs" / "ab" / "x", 0o644), (data / ".master.json.k3_x.tmp",
                                                               0o644)):
        path.write_text("x")
        os.chmod(path, mode)
    os.chmod(data, 0o755)
    secure_tree(data)
    modes = {p.name: os.stat(p).st_mode & 0o777 for p in (
        data, data / "admin.token", data / "notes.txt", data / "blobs" / "ab" / "x",
        data / ".master.json.k3_x.tmp")}
    assert modes == {"data": 0o700, "admin.token": 0o600, "notes.txt": 0o644, "x": 0o600,
                     ".master.json.k3_x.tmp": 0o600}
    secure_tree(tmp_path / "empty")  # new, and again when empty
    secure_tree(tmp_path / "empty")
    # `make demo` writes its pid and log there before `titan up` starts; and the user config
    # dir may hold a master's CA certificate and nothing of Titan's yet.
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "demo.pid").write_text("1\n")
    (demo / "demo-up.log").write_text("")
    secure_tree(demo)
    config = tmp_path / "config"
    config.mkdir()
    (config / "master-ca.pem").write_text("x")
    os.chmod(config / "master-ca.pem", 0o644)
    secure_tree(config, only_titans=False)
    assert os.stat(config / "master-ca.pem").st_mode & 0o777 == 0o644


def test_a_job_stamped_by_a_clock_far_off_is_shown_not_a_traceback(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Stamped by a master whose clock was ahead: shown as stored, its duration never negative.
    import time

    from titan.cli.output import show_job

    ahead = time.time() + 3600
    show_job({"ref": "a", "id": 1, "state": "RUNNING", "submitted_at": 1e300,
              "started_at": ahead, "attempts": [
                  {"attempt": 1, "state": "LOST", "started_at": ahead, "finished_at": ahead - 60}]})
    out = capsys.readouterr().out
    assert "submitted:   1e+300" in out and "duration:    0.0s" in out
    assert "1 LOST (0.0s)" in out


def test_tables_line_up_wide_and_combining_characters(capsys: pytest.CaptureFixture[str]) -> None:
    from titan.cli.output import table, width

    table(["NAME", "STATE"], [["作业", "RUNNING"], ["e\u0301t\u00e9", "DONE"], ["plain", "X"]])
    lines = capsys.readouterr().out.splitlines()
    # Every STATE starts in the same terminal column.
    assert {width(line[:line.index(state)]) for line, state in
            zip(lines, ["STATE", "RUNNING", "DONE", "X"], strict=True)} == {7}
