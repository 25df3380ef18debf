"""`titan runs verify --export` on exports written here with the ledger's own functions (no
master): a JSONL export is read a run at a time, in the memory of one run."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.unit.test_ledger import row

from titan import ledger
from titan.master.runs.views import action_view


def write_export(path: Path, runs: int, actions: int, size: int) -> None:
    """A JSONL export of ``runs`` runs of ``actions`` chained actions, each with about
    ``size`` bytes of inputs, as `titan runs export` writes it."""
    with open(path, "a", encoding="utf-8") as fh:
        for r in range(runs):
            run_id = f"big-{r}"
            rows = []
            for i in range(1, actions + 1):
                inputs = ledger.canonical({"text": "x" * size, "i": i})
                rows.append(row(i, run_id=run_id, inputs=inputs, inputs_size=len(inputs),
                                inputs_hash=hashlib.sha256(inputs.encode()).hexdigest()))
            head, _ = ledger.extend(run_id, None, None, rows)
            fh.write(json.dumps({"type": "run", "id": run_id, "action_count": actions,
                                 "chain_head": head, "chain_start": 1, "ledger_since": 1.6e9,
                                 "created_at": 1.7e9}) + "\n")
            for x in rows:
                fh.write(json.dumps({"type": "action", "run_id": run_id, **action_view(x, ())})
                         + "\n")


#: Verifies ``argv[2]`` (all the code loaded), then ``argv[1]``; prints the peak RSS (KiB)
#: before and after the second, and its exit status.
MEASURE = """
import contextlib, io, resource, sys
from titan.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    main(["runs", "verify", "--export", sys.argv[2]])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["runs", "verify", "--export", sys.argv[1]])
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, code)
"""


def test_a_jsonl_export_is_verified_a_run_at_a_time(tmp_path: Path) -> None:
    # A 137 MB export took 860 MB: the file was read whole, then every run parsed at once.
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    write_export(big, runs=16, actions=250, size=10_000)
    write_export(small, runs=1, actions=2, size=10)
    size_kib = big.stat().st_size // 1024
    assert size_kib > 40_000
    done = subprocess.run([sys.executable, "-c", MEASURE, str(big), str(small)],
                          capture_output=True, text=True, timeout=120)
    before, after, code = map(int, done.stdout.split())
    assert code == 0, done.stdout + done.stderr
    assert after - before < size_kib // 4, (before, after, size_kib)


def verify(path: Path) -> tuple[int, str, list[dict[str, Any]]]:
    """``titan runs verify --export PATH``: its exit status, its text and its verdicts."""
    said = subprocess.run([sys.executable, "-m", "titan", "runs", "verify", "--export",
                           str(path)], capture_output=True, text=True, timeout=60)
    verdicts = json.loads(subprocess.run(
        [sys.executable, "-m", "titan", "runs", "verify", "--export", str(path), "--json"],
        capture_output=True, text=True, timeout=60).stdout)["runs"]
    assert not said.stderr, said.stderr
    return said.returncode, said.stdout, verdicts


def joined(path: Path, *exports: tuple[int, int, int]) -> Path:
    """Exports (runs, actions, size) written one after the other into one file."""
    for runs, actions, size in exports:
        write_export(path, runs, actions, size)
    return path


def test_a_run_twice_in_a_file_is_one_run_unless_its_copies_conflict(tmp_path: Path) -> None:
    # Two monthly exports concatenated read "BROKEN — action #1 appears twice: an action was
    # inserted" (exit 3): a false alarm of tampering, for data nobody touched.
    code, text, verdicts = verify(joined(tmp_path / "twice.jsonl", (2, 3, 10), (2, 3, 10)))
    assert code == 0, text
    assert [(v["run_id"], v["status"], v["copies"]) for v in verdicts] == [
        ("big-0", "verified", 1), ("big-1", "verified", 1)]
    assert "big-0: ok — 3 actions verified; the file holds it more than once, identical" in text
    # A later export of the run, with more actions: each copy verified, both said.
    code, text, verdicts = verify(joined(tmp_path / "grown.jsonl", (1, 3, 10), (1, 5, 10)))
    assert code == 0, text
    assert [(v["status"], v["actions"], v["copy"]) for v in verdicts] == [
        ("verified", 3, 1), ("verified", 5, 2)]
    assert "copy 2 of 2 different copies in the file (exports of different moments)" in text
    # Two copies that each verify, with other content under one chain position: one was
    # rewritten and its chain recomputed. A conflict, said as such.
    code, text, verdicts = verify(joined(tmp_path / "forked.jsonl", (1, 3, 10), (1, 3, 11)))
    assert code == 3, text
    assert verdicts[1]["break"]["kind"] == "conflict"
    assert "big-0: BROKEN — conflict: copy 2 of this run in the file gives action #1 " \
        "another chain hash than copy 1: one of them was rewritten" in text, text
