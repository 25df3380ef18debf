"""The storage contract for evaluations, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from tests.contract import test_storage as base
from titan.storage import Storage

storage = base.storage  # the parametrised SQLite/PostgreSQL fixture (emptied per test)

AGENT = {"name": "bot", "kind": "http", "url": "http://127.0.0.1:1/", "tools": []}


def eval_run(run_id: str, task: str = "t1", status: str = "pending", at: float = 10.0) -> dict:
    return {"id": run_id, "evaluation_id": "ev", "task_id": task, "status": status,
            "agent": AGENT, "world": {"entities": {}, "flags": {}, "removed": {}},
            "by_source": {}, "soft_warnings": [], "token_hash": "h" * 64, "created_at": at}


def test_evaluations_and_tasks_round_trip(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.put_evaluation({"id": "ev", "description": "d", "agent": AGENT,
                           "created_at": 1.0, "updated_at": 1.0})
        assert tx.put_tasks("ev", [{"id": "a", "seed": {"user_instruction": "x"}},
                                   {"id": "b", "seed": {"user_instruction": "y"}}], 2.0) == 2
        # Re-putting replaces a task's seed in place and appends the new one.
        assert tx.put_tasks("ev", [{"id": "a", "seed": {"user_instruction": "x2"}},
                                   {"id": "c", "seed": {"user_instruction": "z"}}], 3.0) == 1
        tx.put_evaluation({"id": "ev", "description": "new", "agent": AGENT | {"version": "2"},
                           "created_at": 99.0, "updated_at": 4.0})
    with storage.transaction() as tx:
        ev = tx.get_evaluation("ev")
        tasks = tx.list_tasks("ev")
        listed = tx.list_evaluations(10)
        assert tx.get_evaluation("nope") is None and tx.get_task("ev", "nope") is None
    assert ev is not None and ev["created_at"] == 1.0 and ev["updated_at"] == 4.0
    assert ev["agent"]["version"] == "2" and ev["description"] == "new"
    assert [(t["id"], t["position"], t["seed"]["user_instruction"]) for t in tasks] == [
        ("a", 1, "x2"), ("b", 2, "y"), ("c", 3, "z")]
    assert [(e["id"], e["task_count"]) for e in listed] == [("ev", 3)]


def test_eval_runs_and_calls(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.insert_eval_run(eval_run("r1", at=10.0))
        tx.insert_eval_run(eval_run("r2", at=11.0, status="running"))
        tx.insert_eval_run(eval_run("r3", task="t2", at=12.0, status="completed"))
        tx.update_eval_run("r1", {"status": "failed", "error_class": "agent_5xx",
                                  "judge": {"verdict": "NOT_APPLICABLE"}, "tool_calls": 2})
        tx.insert_eval_call({"run_id": "r2", "seq": 3, "source": "odyssey",
                             "ops": [{"op": "set_flag", "name": "f", "value": True}],
                             "violations": [], "state": {"flags": {"f": True}},
                             "latency_ms": 1.5})
        tx.insert_eval_call({"run_id": "r2", "seq": 1, "source": "injected", "ops": [],
                             "violations": [], "state": {}, "latency_ms": 0.1})
    with storage.transaction() as tx:
        r1 = tx.get_eval_run("r1")
        all_runs = [r["id"] for r in tx.eval_runs("ev")]
        t1_runs = [r["id"] for r in tx.eval_runs("ev", "t1")]
        unfinished = [r["id"] for r in tx.unfinished_eval_runs()]
        calls = tx.eval_calls("r2")
    assert r1 is not None and r1["status"] == "failed" and r1["judge"] == {
        "verdict": "NOT_APPLICABLE"}
    assert r1["agent"] == AGENT and r1["tool_calls"] == 2
    assert all_runs == ["r1", "r2", "r3"] and t1_runs == ["r1", "r2"]
    assert unfinished == ["r2"]
    assert [c["seq"] for c in calls] == [1, 3]
    assert calls[1]["ops"][0]["op"] == "set_flag" and calls[1]["state"]["flags"] == {"f": True}
    # Pruning the agent run takes its evaluation run and calls with it.
    with storage.transaction() as tx:
        tx.delete_runs(["r2"])
    with storage.transaction() as tx:
        assert tx.get_eval_run("r2") is None and tx.eval_calls("r2") == []


def test_evaluations_belong_to_projects(storage: Storage) -> None:
    """Seed 003's hierarchy: an evaluation (a workflow) names its project; a project is the
    name its evaluations share, listed with how many it holds."""
    with storage.transaction() as tx:
        tx.put_evaluation({"id": "legacy", "description": None, "agent": AGENT,
                           "created_at": 1.0, "updated_at": 1.0})
        tx.put_evaluation({"id": "w1", "project": "acme", "description": None, "agent": AGENT,
                           "created_at": 2.0, "updated_at": 2.0})
        tx.put_evaluation({"id": "w2", "project": "acme", "description": None, "agent": AGENT,
                           "created_at": 3.0, "updated_at": 5.0})
        tx.put_tasks("w2", [{"id": "a", "seed": {"user_instruction": "x"}}], 3.0)
    with storage.transaction() as tx:
        # A put that names no project leaves an existing evaluation where it is.
        tx.put_evaluation({"id": "w1", "description": "again", "agent": AGENT,
                           "created_at": 9.0, "updated_at": 4.0})
    with storage.transaction() as tx:
        legacy, w1 = tx.get_evaluation("legacy"), tx.get_evaluation("w1")
        projects = tx.list_projects()
        acme = tx.list_evaluations(10, project="acme")
        everything = tx.list_evaluations(10)
        assert tx.list_evaluations(10, project="nope") == []
    assert legacy is not None and legacy["project"] == "default"
    assert w1 is not None and w1["project"] == "acme" and w1["description"] == "again"
    assert projects == [{"id": "acme", "workflow_count": 2, "updated_at": 5.0},
                        {"id": "default", "workflow_count": 1, "updated_at": 1.0}]
    assert [(e["id"], e["project"], e["task_count"]) for e in acme] == [
        ("w2", "acme", 1), ("w1", "acme", 0)]
    assert [e["id"] for e in everything] == ["w2", "w1", "legacy"]
    # Moving an evaluation is a put that names another project.
    with storage.transaction() as tx:
        tx.put_evaluation({"id": "w1", "project": "default", "description": None,
                           "agent": AGENT, "created_at": 2.0, "updated_at": 6.0})
    with storage.transaction() as tx:
        assert [(p["id"], p["workflow_count"]) for p in tx.list_projects()] == [
            ("acme", 1), ("default", 2)]


def test_deleting_an_evaluation_takes_its_tasks_runs_and_calls(storage: Storage) -> None:
    with storage.transaction() as tx:
        for ev in ("ev", "other"):
            tx.put_evaluation({"id": ev, "description": None, "agent": AGENT,
                               "created_at": 1.0, "updated_at": 1.0})
            tx.put_tasks(ev, [{"id": "t1", "seed": {"user_instruction": "x"}}], 1.0)
        tx.insert_eval_run(eval_run("r1", at=10.0))
        tx.insert_eval_run(eval_run("r2", at=11.0, status="running"))
        tx.insert_eval_run(eval_run("o1", at=12.0) | {"evaluation_id": "other"})
        for run in ("r1", "o1"):
            tx.insert_eval_call({"run_id": run, "seq": 1, "source": "injected", "ops": [],
                                 "violations": [], "state": {}, "latency_ms": 0.1})
    with storage.transaction() as tx:
        assert tx.delete_evaluation("ev") == 2
    with storage.transaction() as tx:
        assert tx.get_evaluation("ev") is None and tx.get_task("ev", "t1") is None
        assert tx.get_eval_run("r1") is None and tx.eval_calls("r1") == []
        # Another evaluation's are untouched.
        assert tx.get_evaluation("other") is not None and tx.get_task("other", "t1")
        assert tx.get_eval_run("o1") is not None and len(tx.eval_calls("o1")) == 1
        assert tx.delete_evaluation("ev") == 0
