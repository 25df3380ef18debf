"""The worker's workspace, output splitting and job environment (no master needed)."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import zipfile
from pathlib import Path

import pytest

from titan import errors
from titan.redaction import scrub_titan_tokens
from titan.worker.assignment import Assignment, inherited_env, job_env, master_host_port
from titan.worker.connection import MasterConnection
from titan.worker.output import MAX_LINE, LineSplitter
from titan.worker.safe_paths import UnsafePath, extract_zip, safe_relative
from titan.worker.workspace import Workspace

# ---------------------------------------------------------------------------- paths


@pytest.mark.parametrize("name", ["etl/extract.py", "a.py", "./x/y.sh", "deep/er/z.py"])
def test_safe_relative_keeps_relative_paths(name: str) -> None:
    assert str(safe_relative(name)) == name.removeprefix("./")


@pytest.mark.parametrize("name", ["/etc/passwd", "../x.py", "a/../../x.py", "a/..", "",
                                  "C:/win.py", "..\\evil.py", "a\x00b"])
def test_safe_relative_refuses_escapes(name: str) -> None:
    with pytest.raises(UnsafePath):
        safe_relative(name)


# ---------------------------------------------------------------------------- archives


def _zip(path: Path, members: dict[str, str], *, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, body in members.items():
            zf.writestr(name, body)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def test_extract_zip_extracts_into_target(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "p.zip", {"app/main.py": "print(1)\n", "pkg/__init__.py": ""})
    target = tmp_path / "projects" / "p-abc"
    extract_zip(archive, target)
    assert (target / "app" / "main.py").read_text() == "print(1)\n"
    assert (target / "pkg" / "__init__.py").exists()
    assert [p.name for p in target.parent.iterdir()] == ["p-abc"]  # no temporary left behind


@pytest.mark.parametrize("evil", ["../evil.py", "/abs/evil.py", "a/../../evil.py",
                                  "..\\evil.py"])
def test_extract_zip_refuses_zip_slip(tmp_path: Path, evil: str) -> None:
    archive = _zip(tmp_path / "p.zip", {"ok.py": "", evil: "pwned"})
    target = tmp_path / "projects" / "p-abc"
    with pytest.raises(UnsafePath):
        extract_zip(archive, target)
    assert not target.exists()
    assert not (tmp_path / "evil.py").exists()
    assert not (tmp_path / "projects" / "evil.py").exists()
    assert list((tmp_path / "projects").iterdir()) == []


def test_extract_zip_refuses_symlinks(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "p.zip", {"ok.py": ""}, symlink="link")
    with pytest.raises(UnsafePath):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- scripts


def _workspace(tmp_path: Path) -> Workspace:
    # Nothing here reaches the network: blobs are put in the cache first.
    conn = MasterConnection("http://127.0.0.1:9", None, threading.Event())
    return Workspace(tmp_path, conn)


def _cache_blob(ws: Workspace, body: bytes) -> str:
    sha = hashlib.sha256(body).hexdigest()
    path = ws.blob_cache / sha[:2] / sha
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return sha


def test_materialize_writes_only_when_content_differs(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    v1 = _cache_blob(ws, b"print('v1')\n")
    script = ws.materialize("etl/extract.py", v1).path
    assert script == tmp_path / "titan_workspace" / "shared" / "etl" / "extract.py"
    assert script.read_bytes() == b"print('v1')\n"
    inode = script.stat().st_ino
    ws2 = _workspace(tmp_path)  # a restarted worker: compares content, does not rewrite
    assert ws2.materialize("etl/extract.py", v1).path.stat().st_ino == inode
    v2 = _cache_blob(ws, b"print('v2')\n")
    assert ws.materialize("etl/extract.py", v2).path.read_bytes() == b"print('v2')\n"
    assert script.stat().st_ino != inode  # replaced atomically, not rewritten in place
    assert [p.name for p in script.parent.iterdir()] == ["extract.py"]


def test_materialize_refuses_escaping_names_and_bad_hashes(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    sha = _cache_blob(ws, b"x")
    with pytest.raises(UnsafePath):
        ws.materialize("../outside.py", sha)
    with pytest.raises(errors.ValidationFailed):
        ws.materialize("ok.py", "../../etc/passwd")


def test_a_link_a_job_left_in_shared_is_never_written_through_nor_in_the_way(tmp_path: Path) -> None:
    # A job (sandboxed, so it cannot write outside shared/ itself) plants links in shared/,
    # then submits scripts named through them: the worker, which can write anywhere, must
    # not write where they point (it wrote the data dir's admin.token this way).
    ws = _workspace(tmp_path)
    secret_dir = tmp_path / "data"
    secret_dir.mkdir()
    (secret_dir / "admin.token").write_text("tt_real")
    (ws.shared / "d").symlink_to(secret_dir)
    (ws.shared / "token.py").symlink_to(secret_dir / "admin.token")
    sha = _cache_blob(ws, b"tt_attacker\n")
    # The link in the way is removed (not followed) and a directory made in its place: left
    # there, it failed every later job with a script under d/ on this worker.
    placed = ws.materialize("d/admin.token", sha).path
    assert placed == ws.shared / "d" / "admin.token" and placed.read_bytes() == b"tt_attacker\n"
    assert not (ws.shared / "d").is_symlink() and (ws.shared / "d").is_dir()
    # A link at the script's own name is replaced by the script, not written through.
    script = ws.materialize("token.py", sha).path
    assert not script.is_symlink() and script.read_bytes() == b"tt_attacker\n"
    assert (secret_dir / "admin.token").read_text() == "tt_real"
    assert sorted(p.name for p in secret_dir.iterdir()) == ["admin.token"]


def test_the_workspace_is_the_workers_own(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)  # other local users read no job's scripts or outputs
    assert ws.root.stat().st_mode & 0o077 == 0


# ---------------------------------------------------------------------------- output


def test_line_splitter_handles_partial_lines_and_crlf() -> None:
    s = LineSplitter()
    assert s.feed(b"ab") == []
    assert s.feed(b"c\r\nde\nf") == [("abc", False), ("de", False)]
    assert s.feed(b"\n\n") == [("f", False), ("", False)]
    assert s.feed(b"tail") == []
    assert s.close() == [("tail", False)]
    assert s.close() == []


def test_line_splitter_cuts_long_lines_at_character_boundaries() -> None:
    s = LineSplitter()
    text = "é" * MAX_LINE  # two bytes each: a cut at MAX_LINE bytes would fall mid-character
    pieces = s.feed(text.encode() + b"\n")
    # Every piece but the last says the next goes on from it (stored so, joined by readers).
    assert [continues for _, continues in pieces] == [True, False]
    lines = [line for line, _ in pieces]
    assert "".join(lines) == text
    assert all(len(line.encode()) <= MAX_LINE for line in lines)
    assert "\ufffd" not in "".join(lines)


@pytest.mark.parametrize("token", ["tj.12.1." + "a" * 32, "ta.12.1." + "9" * 32,
                                   "tw.w-1a2b." + "b" * 40,
                                   "tt_" + "c" * 43,
                                   "tok-3f9a0b1c2d4e.p" + "e" * 24 + ".1767225600." + "f" * 40])
@pytest.mark.parametrize("back", [1, 3, 10, 40])
def test_a_long_line_is_not_cut_inside_a_token(token: str, back: int) -> None:
    # Cut at 64 KiB in the middle of a token, the master's redaction (line by line) matched
    # neither half, and a viewer read the token by joining the two lines.
    head = "c" * (MAX_LINE - back - 1) + " "
    lines = [line for line, _ in LineSplitter().feed((head + token + " tail\n").encode())]
    assert len(lines) == 2 and all(len(line.encode()) <= MAX_LINE for line in lines)
    assert "".join(lines) == head + token + " tail"
    assert [scrub_titan_tokens(line).count("[titan token redacted]") for line in lines] == [0, 1]
    # Glued to what comes before, found all the same (an API token's "tt_" only outside a
    # word: "Scott_" and 40 letters is a name).
    for prefix in ("Bearer_", "v1.", "=") + (() if token.startswith("tt_") else ("x",)):
        assert scrub_titan_tokens(prefix + token) == prefix + "[titan token redacted]"


@pytest.mark.parametrize("prefix", ["Bearer%20", "authorization=Bearer%20", "token%3D",
                                    "failed\\n", "auth\\t", "x\\u00e9", "a\\x41"])
def test_an_api_token_after_an_escape_is_redacted(prefix: str) -> None:
    # The escape's last character is a letter or digit: "%20tt_", "\\ntt_" looked like a
    # word going on, and a viewer read an operator token from a job's log (QA).
    token = "tt_" + "d" * 43
    assert scrub_titan_tokens(f"{prefix}{token} end") == f"{prefix}[titan token redacted] end"


def test_line_splitter_replaces_bad_utf8() -> None:
    assert LineSplitter().feed(b"ok \xff\xfe\n") == [("ok \ufffd\ufffd", False)]


# ---------------------------------------------------------------------------- environment


def test_job_env() -> None:
    a = Assignment.from_json({
        "id": 17, "attempt": 2, "job_id": "extract", "ref": "nightly#3/extract",
        "dag": "nightly", "dag_id": 3, "agent_run_id": None, "filename": "etl/extract.py",
        "script_sha256": "0" * 64, "args": ["--day", 1], "env": {"MINE": "1", "TITAN_JOB_ID": "x"},
        "job_type": "RUN_PAYLOAD", "is_archive": False, "port": 8081, "runner": "auto",
        "timeout": None, "token": "job-token",
    })
    assert a.args == ["--day", "1"]
    base = {"PATH": "/bin", "TITAN_TOKEN": "worker-secret", "TITAN_AGENT_RUN_ID": "stale",
            "PWD": "/home/ops", "OLDPWD": "/home"}
    env = job_env(a, master_url="http://10.0.0.5:9090/", workspace=Path("/w/shared"), base=base)
    assert env["PATH"] == "/bin" and env["MINE"] == "1"
    assert env["TITAN_HOST"] == "10.0.0.5" and env["TITAN_PORT"] == "9090"
    assert env["TITAN_MASTER_URL"] == "http://10.0.0.5:9090"
    assert env["TITAN_TOKEN"] == "job-token"
    assert env["TITAN_JOB_ID"] == "extract"  # the job's own env cannot override Titan's
    assert env["TITAN_JOB_REF"] == "nightly#3/extract"
    assert env["TITAN_JOB_UID"] == "17" and env["TITAN_ATTEMPT"] == "2"
    assert env["TITAN_DAG"] == "nightly" and env["TITAN_DAG_RUN"] == "3"
    assert env["TITAN_WORKSPACE"] == "/w/shared"
    assert env["PWD"] == "/w/shared" and "OLDPWD" not in env  # where the job starts
    assert env["TITAN_SERVICE_PORT"] == "8081"
    assert "TITAN_AGENT_RUN_ID" not in env and "TITAN_PROJECT_DIR" not in env
    # A worker started by a run's helper process, or a job's own env, makes no job a helper.
    told = dict(a.env, TITAN_TRACE_PROCESS='{"run":"R","actor":"DRIVER/driver/proc-1"}')
    helped = Assignment.from_json({"id": 2, "attempt": 1, "filename": "a.py", "env": told})
    assert "TITAN_TRACE_PROCESS" not in job_env(
        helped, master_url="http://m:1", workspace=Path("/w"),
        base=dict(base, TITAN_TRACE_PROCESS='{"run":"S","actor":"x/proc-2"}'))
    no_token = Assignment.from_json({"id": 1, "attempt": 1, "filename": "a.py"})
    env = job_env(no_token, master_url="https://m.example", workspace=Path("/w"), base=base)
    assert "TITAN_TOKEN" not in env  # the worker's own token never reaches a job
    assert "TITAN_SERVICE_PORT" not in env and "TITAN_DAG_RUN" not in env  # no ref, no run


def test_a_job_inherits_no_credential_of_the_workers_environment() -> None:
    token = "tt_" + "e" * 43
    worker = {
        "PATH": "/home/matt_smith_projects_alpha_beta_gamma/bin",  # "tt_" inside a word
        "LANG": "C.UTF-8", "PLAIN_URL": "redis://cache:6379/0", "AT_IN_PATH": "http://h/a@b",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20" + token,
        "TITAN_OTLP_HEADERS": "x-api=abc", "CUSTOM": "Bearer%20" + token,
        "REDIS_URL": "redis://:hunter2@cache:6379/0", "CELERY_BROKER_URL": "amqp://u:pw@mq//",
        "S3_ENDPOINT": "http://key:secret@minio:9000", "GITHUB_TOKEN": "ghp_x",
        "GEMINI_API_KEY": "g", "PASSED_URL": "postgres://app:pw@db/app",
        "TITAN_JOB_ENV_PASS": "PASSED_URL,CUSTOM",
    }
    assert inherited_env(worker) == {
        "PATH": worker["PATH"], "LANG": "C.UTF-8", "PLAIN_URL": "redis://cache:6379/0",
        "AT_IN_PATH": "http://h/a@b", "GEMINI_API_KEY": "g",
        # Named in TITAN_JOB_ENV_PASS: a URL's password passes; a Titan token never does.
        "PASSED_URL": "postgres://app:pw@db/app",
    }


def test_a_value_that_is_a_credential_is_not_inherited_whatever_its_name() -> None:
    # Names the list does not cover held a GitHub token, a PEM key and a Basic credential,
    # and jobs read them (a security QA pass): the redactor's key patterns judge values too.
    worker = {
        "GH_PAT": "ghp_" + "A1b2" * 9, "PRIVKEY_PEM": "-----BEGIN PRIVATE KEY-----\nMIIE",
        "WEIRD": "Authorization: Basic dXNlcjpwYXNz", "PGPASS": "pgp",
        "BEARER_HDR": "Bearer abcdefgh12345678", "LANG": "C.UTF-8",
        "NOTES": "Bearer of good news", "SHORT": "sk-1", "HOME": "/home/ghp_user",
        "KEPT_PAT": "ghp_" + "Z9y8" * 9, "TITAN_JOB_ENV_PASS": "KEPT_PAT",
    }
    assert inherited_env(worker) == {
        "LANG": "C.UTF-8", "NOTES": "Bearer of good news", "SHORT": "sk-1",
        "HOME": "/home/ghp_user", "KEPT_PAT": worker["KEPT_PAT"],
    }


def test_master_host_port_defaults() -> None:
    assert master_host_port("http://localhost:9090") == ("localhost", 9090)
    assert master_host_port("https://titan.example") == ("titan.example", 443)
    assert master_host_port("http://[::1]:80") == ("::1", 80)


def test_malformed_assignment_is_a_validation_error() -> None:
    with pytest.raises(errors.ValidationFailed):
        Assignment.from_json({"attempt": 1})


def test_a_workdir_that_is_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    # A NotADirectoryError traceback before (QA).
    afile = tmp_path / "a-file"
    afile.write_text("x")
    conn = MasterConnection("http://127.0.0.1:9", None, threading.Event())
    with pytest.raises(errors.ConfigError, match="cannot make the workspace there"):
        Workspace(afile, conn)


def test_a_ca_file_without_a_certificate_is_a_one_line_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from titan.client.tls import client_context

    not_pem = tmp_path / "hostname"
    not_pem.write_text("box\n")
    monkeypatch.setenv("TITAN_CA_FILE", str(not_pem))
    with pytest.raises(errors.ConfigError, match="holds no PEM certificate"):
        client_context("https://m.example:9090")


def test_cached_scripts_unused_for_the_window_are_evicted(tmp_path: Path) -> None:
    # Every distinct script stayed in the cache for good: a worker serving agents that write
    # new code each step filled its disk (the soak pass: 4 MB per 400 small scripts).
    ws = _workspace(tmp_path)
    old, hot = _cache_blob(ws, b"print('old')\n"), _cache_blob(ws, b"print('hot')\n")
    for sha in (old, hot):
        ws.materialize(f"{sha[:8]}.py", sha)
        path = ws.blob_cache / sha[:2] / sha
        os.utime(path, (1_000_000, 1_000_000))  # last used long ago
    assert ws.cached(f"{hot[:8]}.py", hot) is not None  # used now: marked so
    assert ws.evict(older_than=2_000_000) == 1
    assert not (ws.blob_cache / old[:2] / old).exists()
    assert (ws.blob_cache / hot[:2] / hot).exists()
    # The evicted one's script stays where jobs may import it; its cache entry is not
    # trusted any more (it would be fetched again), the used one's still is.
    assert (ws.shared / f"{old[:8]}.py").read_bytes() == b"print('old')\n"
    assert ws.cached(f"{old[:8]}.py", old) is None
    assert ws.cached(f"{hot[:8]}.py", hot) is not None


def test_the_cache_window_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from titan.errors import ConfigError
    from titan.worker.settings import cache_days

    monkeypatch.setenv("TITAN_WORKER_CACHE_DAYS", "0")
    assert cache_days() == 0
    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv("TITAN_WORKER_CACHE_DAYS", bad)
        with pytest.raises(ConfigError, match="TITAN_WORKER_CACHE_DAYS"):
            cache_days()
