"""`titan runs prune --export-to` against a real master: what it deletes is what its export
saved, run by run and action by action; its export and its refusals say what they do."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.tcp_proxy import TcpProxy
from tests.integration.harness import Cluster, isolated_cluster
from tests.integration.test_runs_api import call, error, ok

DAY = 86400.0


@pytest.fixture(scope="module")
def cl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = isolated_cluster(tmp_path_factory.mktemp("prune-export"), slots=1)
    try:
        yield c
    finally:
        c.stop()


def env(cl: Cluster, port: int | None = None) -> dict[str, str]:
    return dict(cl.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(port or cl.port),
                TITAN_TOKEN=cl.admin_token)


def titan(cl: Cluster, *args: str, script: str = "",
          port: int | None = None) -> subprocess.CompletedProcess[str]:
    """``titan ARGS``; ``script``: Python run first in the same process (a hook); ``port``:
    the master's, or a proxy's in front of it."""
    code = textwrap.dedent(script) + "\nimport sys\nfrom titan.cli import main\n" \
        f"sys.exit(main({list(args)!r}))\n"
    return subprocess.run([sys.executable, "-c", code], env=env(cl, port), cwd=cl.root,
                          capture_output=True, text=True, timeout=120)


def act(i: int, at: float, **kw: Any) -> dict[str, Any]:
    return {"id": f"a{i}", "name": "lookup", "channel": "tool", "started_at": at,
            "inputs": {"i": i}, "outputs": {"o": i}, **kw}


def old_run(cl: Cluster, run_id: str, days: float = 3, actions: int = 2,
            status: str = "completed", **fields: Any) -> None:
    at = time.time() - days * DAY
    ok(cl, "POST", "/runs", {"id": run_id, "agent_id": "prune", "started_at": at, **fields},
       status=201)
    if actions:
        ok(cl, "POST", f"/runs/{run_id}/actions",
           {"actions": [act(i, at + i) for i in range(actions)]})
    ok(cl, "PATCH", f"/runs/{run_id}", {"status": status, "ended_at": at + 60})


def test_a_run_that_records_an_action_after_the_export_is_not_deleted(
        cl: Cluster, tmp_path: Path) -> None:
    # A finished run accepts actions (an SDK's late flush). One accepted between the
    # prune's export and its deletion was deleted with the run, and was in neither the
    # export nor the database.
    old_run(cl, "late-1")
    old_run(cl, "late-2")
    hook = f"""
    import httpx, time
    import titan.cli.runs as runs
    download = runs.download
    def late(client, params, output):
        size = download(client, params, output)
        httpx.post({cl.url + '/api/v1/runs/late-1/actions'!r},
                   headers={{"Authorization": "Bearer {cl.admin_token}"}},
                   json={{"actions": [{{"id": "late", "name": "flush", "started_at": time.time(),
                                      "inputs": {{"important": True}}}}]}}).raise_for_status()
        return size
    runs.download = late
    """
    path = tmp_path / "pruned.jsonl"
    out = titan(cl, "runs", "prune", "--older-than", "1d", "--export-to", str(path), "-y",
                script=hook)
    assert out.returncode == 0, out.stdout + out.stderr
    saved = [json.loads(x) for x in path.read_text().splitlines()]
    assert {x["id"] for x in saved if x["type"] == "run"} == {"late-1", "late-2"}
    assert not any(x.get("id") == "late" for x in saved)
    # The run that changed is kept, whole, and said so; the other one went.
    run = ok(cl, "GET", "/runs/late-1")
    assert run["action_count"] == 3
    assert ok(cl, "GET", "/runs/late-1/actions/3")["inputs"] == {"important": True}
    error(cl, "GET", "/runs/late-2", status=404)
    assert "deleted 1 finished run(s)" in out.stdout, out.stdout
    assert "kept 1 run(s) that recorded actions after the export" in out.stdout
    assert "late-1" in out.stdout
    # Pruned again, its new state is saved, then it goes.
    again = tmp_path / "again.jsonl"
    out = titan(cl, "runs", "prune", "--older-than", "1d", "--export-to", str(again), "-y")
    assert out.returncode == 0 and "deleted 1 finished run(s)" in out.stdout, out.stdout
    assert sum(1 for x in again.read_text().splitlines()
               if json.loads(x).get("id") == "late") == 1
    error(cl, "GET", "/runs/late-1", status=404)


def test_prune_runs_deletes_each_run_only_as_it_was_exported(cl: Cluster) -> None:
    old_run(cl, "as-1")
    old_run(cl, "as-2")
    old_run(cl, "as-held", retention_class="legal_hold")
    state = {r: ok(cl, "GET", f"/runs/{r}") for r in ("as-1", "as-2", "as-held")}

    def saved(run_id: str, **kw: Any) -> dict[str, Any]:
        return {"id": run_id, "action_count": state[run_id]["action_count"],
                "chain_head": state[run_id]["chain_head"], **kw}

    for bad in ({"older_than": "1d", "runs": "as-1"}, {"older_than": "1d", "runs": [{}]},
                {"older_than": "1d", "runs": [saved("as-1", action_count="2")]},
                {"older_than": "1d", "runs": [saved("as-1", extra=1)]},
                {"older_than": "1d", "runs": [], "run_ids": []}):
        error(cl, "POST", "/runs/prune", bad, status=400, code="invalid_request")
    body = {"older_than": "1d", "runs": [saved("as-1"), saved("as-2", action_count=1),
                                         saved("as-held"), dict(saved("as-1"), id="as-ghost")]}
    dry = ok(cl, "POST", "/runs/prune", dict(body, dry_run=True))
    assert (dry["run_ids"], dry["changed"], dry["kept"]) == (["as-1"], ["as-2"], ["as-held"])
    ok(cl, "GET", "/runs/as-1")
    done = ok(cl, "POST", "/runs/prune", body)
    assert (done["pruned"], done["run_ids"], done["changed"], done["kept"]) == (
        1, ["as-1"], ["as-2"], ["as-held"])
    error(cl, "GET", "/runs/as-1", status=404)
    assert ok(cl, "GET", "/runs/as-2")["action_count"] == 2


def test_a_master_gone_mid_export_is_one_line_and_leaves_nothing(cl: Cluster,
                                                                  tmp_path: Path) -> None:
    # A master killed mid `titan runs export -o FILE` printed a 40-line traceback ending in
    # httpx.ReadError. The proxy closes the connection as a killed master's kernel does.
    old_run(cl, "cut-1", actions=0)
    at = time.time() - 3 * DAY
    for start in range(0, 2000, 500):
        ok(cl, "POST", "/runs/cut-1/actions", {"actions": [
            act(i, at + i, inputs={"text": "x" * 500}) for i in range(start, start + 500)]})
    proxy = TcpProxy(("127.0.0.1", cl.port))
    proxy.cut_after = 200_000
    try:
        path = tmp_path / "cut.jsonl"
        out = titan(cl, "runs", "export", "--q", "cut-1", "-o", str(path), port=proxy.port)
        assert out.returncode == 1 and out.stderr == (
            f"error: the master closed the connection mid-export: {path} is not the export; "
            "nothing written to it\n"), out.stderr
        assert list(tmp_path.iterdir()) == []  # nor half a file
        out = titan(cl, "runs", "export", "--q", "cut-1", port=proxy.port)
        assert out.returncode == 1 and out.stderr == (
            "error: the master closed the connection mid-export: what was written above is "
            "cut short\n"), out.stderr
        assert 0 < len(out.stdout) < 1_000_000
        out = titan(cl, "runs", "prune", "--older-than", "1d", "--export-to", str(path), "-y",
                    port=proxy.port)
        assert out.returncode == 1 and out.stderr.endswith(
            "nothing written to it; nothing was deleted\n") and "Traceback" not in out.stderr, \
            out.stderr
        assert not path.exists()
    finally:
        proxy.close()
    assert ok(cl, "GET", "/runs/cut-1")["action_count"] == 2000


def test_a_prunes_export_holds_exactly_what_it_deletes(cl: Cluster, tmp_path: Path) -> None:
    # It saved the runs of the classes it keeps too: "saved 4 run(s)", then "deleted 2".
    old_run(cl, "cls-std")
    old_run(cl, "cls-failed", status="failed")
    old_run(cl, "cls-ext", retention_class="extended")
    old_run(cl, "cls-hold", retention_class="legal_hold")
    ok(cl, "POST", "/runs", {"id": "cls-running", "started_at": time.time() - 3 * DAY},
       status=201)
    ok(cl, "POST", "/runs", {"id": "cls-new"}, status=201)
    ok(cl, "PATCH", "/runs/cls-new", {"status": "completed"})
    ok(cl, "POST", "/runs/cls-std/archive")
    _, text = call(cl, "GET", "/runs/export", params={
        "format": "jsonl", "actions": "false", "older_than": "1d", "archived": "all",
        "prunable": "true", "q": "cls-"})
    assert {json.loads(x)["id"] for x in text.splitlines()} == {"cls-std", "cls-failed"}
    path = tmp_path / "pruned.jsonl"
    out = titan(cl, "runs", "prune", "--older-than", "1d", "--export-to", str(path), "-y")
    assert out.returncode == 0, out.stdout + out.stderr
    saved = {json.loads(x)["id"] for x in path.read_text().splitlines()
             if json.loads(x)["type"] == "run"}
    assert {i for i in saved if i.startswith("cls-")} == {"cls-std", "cls-failed"}
    assert out.stdout.splitlines() == [
        f"saved {len(saved)} run(s) with their actions to {path}",
        f"deleted {len(saved)} finished run(s) started more than 1d ago"], out.stdout
    for kept in ("cls-ext", "cls-hold", "cls-running", "cls-new"):
        ok(cl, "GET", f"/runs/{kept}")


def test_an_exports_older_than_is_read_as_a_prune_reads_it(cl: Cluster) -> None:
    # older_than=0d was refused as "window must be like 24h, ..." naming the field
    # 'window'; 3m was taken (as minutes) where a prune refuses it (minutes or months?).
    for value, said in (("0d", "at least 1h"), ("3m", "minutes or months?"),
                        ("\u0663d", "hours or days")):  # Arabic-Indic 3: ASCII digits only
        err = error(cl, "GET", "/runs/export", params={"older_than": value}, status=400)
        assert err["details"] == {"field": "older_than"}, err
        assert err["message"].startswith("older_than must be a number of hours or days") \
            and said in err["message"], err
        error(cl, "POST", "/runs/prune", {"older_than": value}, status=400)
    error(cl, "GET", "/runs", params={"window": "\u0663d"}, status=400)
    old_run(cl, "ot-old", days=3)
    ok(cl, "POST", "/runs", {"id": "ot-new"}, status=201)
    out = titan(cl, "runs", "export", "--older-than", "2d", "--q", "ot-", "--no-actions")
    assert out.returncode == 0, out.stderr
    assert [json.loads(x)["id"] for x in out.stdout.splitlines()] == ["ot-old"]
    out = titan(cl, "runs", "export", "--older-than", "3m", "--q", "ot-")
    assert out.returncode == 1 and "minutes or months?" in out.stderr, out.stderr


def test_a_prune_exported_to_stdout_and_an_archive_of_several_runs(cl: Cluster) -> None:
    # --export-to - wrote the export to stdout, then failed "No such file or directory: -"
    # and pruned nothing: refused before anything is exported.
    old_run(cl, "dash-1")
    out = titan(cl, "runs", "prune", "--older-than", "1d", "--export-to", "-", "-y")
    assert out.returncode == 1 and out.stdout == "", out.stdout
    assert out.stderr.startswith("error: --export-to needs a file"), out.stderr
    ok(cl, "GET", "/runs/dash-1")
    # `titan runs archive A B C` stopped at the first refused run, with no word on the rest.
    old_run(cl, "arch-1")
    old_run(cl, "arch-2")
    ok(cl, "POST", "/runs", {"id": "arch-running"}, status=201)
    out = titan(cl, "runs", "archive", "arch-1", "arch-running", "arch-ghost", "arch-2")
    assert out.returncode == 1
    assert out.stdout == "run arch-1: archived\nrun arch-2: archived\n", out.stdout
    said = out.stderr.splitlines()
    assert said[0].startswith("run arch-running: not archived: run 'arch-running' is still "
                              "running"), said
    assert said[1].startswith("run arch-ghost: not archived: ") and said[2] == (
        "2 of 4 run(s) not archived (above)"), said
    assert ok(cl, "GET", "/runs/arch-2")["archived"] is True
    replies = json.loads(titan(cl, "runs", "unarchive", "arch-ghost", "arch-2",
                               "--json").stdout)
    assert [r.get("refused", "")[:6] for r in replies] == ["no age", ""], replies
    assert replies[1]["archived"] is False
