"""Every code snippet of seed 002 (the Python SDK page), run as written against `titan up`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, shared_cluster

cluster = shared_cluster()  # one `titan up` for the module (see harness.py)


def run_snippet(cluster: Cluster, source: str, cwd: Path, name: str = "snippet.py") -> str:
    """Run a seed snippet as a user would: `python snippet.py` in their project directory."""
    path = cwd / name
    path.write_text(textwrap.dedent(source))
    out = subprocess.run([sys.executable, str(path)], cwd=cwd, env=cluster.env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_dag_basics_gpu_job_waits_for_gpu_worker(cluster: Cluster, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "etl").mkdir(parents=True)
    (project / "ml").mkdir()
    (project / "etl" / "extract.py").write_text("print('extracted 42 rows')\n")
    (project / "ml" / "train.py").write_text("print('trained on GPU')\n")
    snippet = f'''
        from titan_sdk import TitanClient, TitanJob

        client = TitanClient(host="localhost", port={cluster.port})

        # 1. Define the Root Task
        task_a = TitanJob(
            job_id="extract_data",
            filename="etl/extract.py",
            priority=5
        )

        # 2. Define a Dependent Task
        task_b = TitanJob(
            job_id="train_model",
            filename="ml/train.py",
            requirement="GPU",
            parents=["extract_data"] # <--- Defines the dependency
        )

        # 3. Submit them as a unified DAG
        client.submit_dag("nightly_pipeline", [task_a, task_b])
        print("DAG Submitted Successfully!")
    '''
    assert "DAG Submitted Successfully!" in run_snippet(cluster, snippet, project)
    client = cluster.client()
    assert client.wait("extract_data", timeout=30)["state"] == "COMPLETED"
    job = client.get_job("train_model")
    assert job["state"] == "PENDING" and "GPU" in job["reason"]
    cluster.add_worker(capabilities="GPU", slots=1, name="gpu-box")
    assert client.wait("train_model", timeout=30)["state"] == "COMPLETED"
    assert "trained on GPU" in client.fetch_logs("train_model")
    assert client.wait("DAG-nightly_pipeline", timeout=5)["status"] == "COMPLETED"


def test_dynamic_logic_switch(cluster: Cluster, tmp_path: Path) -> None:
    tmp_path = tmp_path / "project"
    tmp_path.mkdir()
    (tmp_path / "fast_path.py").write_text("print('fast')\n")
    (tmp_path / "deep_path.py").write_text("print('deep')\n")
    body = '''
        from titan_sdk import TitanClient, TitanJob

        client = TitanClient()
        traffic_load = get_current_traffic() # Your custom monitoring logic

        if traffic_load > 80:
            print("[HIGH] High Traffic. Switching to lightweight 'FAST' pipeline.")
            fast_job = TitanJob(job_id="fast_scan", filename="fast_path.py")
            client.submit_job(fast_job)
        else:
            print("[LOW] Normal Traffic. Generating distributed 'DEEP' analysis DAG.")
            # Programmatically generate 10 parallel tasks
            deep_tasks = [
                TitanJob(job_id=f"deep_{i}", filename="deep_path.py")
                for i in range(10)
            ]
            client.submit_dag("DEEP_PIPELINE", deep_tasks)
    '''
    for load in (95, 20):
        snippet = f"def get_current_traffic():\n    return {load}\n" + textwrap.dedent(body)
        run_snippet(cluster, snippet, tmp_path, name=f"switch_{load}.py")
    client = cluster.client()
    assert client.wait("fast_scan", timeout=30)["state"] == "COMPLETED"
    dag = client.wait("DEEP_PIPELINE", timeout=30)
    assert dag["status"] == "COMPLETED" and dag["counts"]["COMPLETED"] == 10


def test_a_dag_is_submitted_from_a_generator_of_jobs(cluster: Cluster, tmp_path: Path) -> None:
    # Seed 002 builds its 10 parallel tasks with a list comprehension; the same written as a
    # generator expression was refused ("submit_dag() takes a list of TitanJob").
    (tmp_path / "deep_path.py").write_text("print('deep')\n")
    from titan_sdk import TitanJob

    client = cluster.client()
    dag = client.submit_dag("GEN_PIPELINE", (TitanJob(job_id=f"deep_{i}",
                                                      filename=str(tmp_path / "deep_path.py"))
                                             for i in range(3)), wait=True, timeout=60)
    assert dag["status"] == "COMPLETED" and dag["counts"]["COMPLETED"] == 3
    from titan.errors import ValidationFailed

    for wrong in (TitanJob("one", str(tmp_path / "deep_path.py")), "deep_path.py",
                  {"job_id": "x"}, None):
        with pytest.raises(ValidationFailed, match="takes a list of TitanJob"):
            client.submit_dag("GEN_WRONG", wrong)  # type: ignore[arg-type]


@pytest.mark.parametrize("crash", [
    # A real crash: the worker's line in the log is what the snippet finds.
    "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n",
    # Out of memory as Python says it (MemoryError): the log never said "OutOfMemory", so
    # the snippet's agent called a run that had run out of memory healthy.
    "buffer = bytearray(10**15)\n",
], ids=["segfault", "memory_error"])
def test_self_healing_loop_reads_fetch_logs(cluster: Cluster, tmp_path: Path, crash: str) -> None:
    tmp_path = tmp_path / "project"
    (tmp_path / "scripts").mkdir(parents=True)
    (tmp_path / "flaky.py").write_text("print('epoch 3 of 10', flush=True)\n" + crash)
    (tmp_path / "scripts" / "safe_mode_patch.py").write_text("print('patched in safe mode')\n")
    client = cluster.client()
    from titan_sdk import TitanJob

    client.submit_job(TitanJob(job_id="flaky_training_run", filename=str(tmp_path / "flaky.py")))
    assert client.wait("flaky_training_run", timeout=30)["state"] == "FAILED"
    out = run_snippet(cluster, '''
        from titan_sdk import TitanClient, TitanJob

        client = TitanClient()
        job_id = "flaky_training_run"

        # 1. Fetch remote execution logs via Titan's protocol
        logs = client.fetch_logs(job_id)

        # 2. AI/Logic Evaluation
        if "Segfault" in logs or "OutOfMemory" in logs:
            print(f"[ERROR] CRITICAL ERROR in {job_id}. Agent is deploying a patch...")

            # Programmatically create a new job to fix the issue
            fix_job = TitanJob(
                job_id=f"{job_id}_fix",
                filename="scripts/safe_mode_patch.py",
                requirement="GENERAL"
            )

            # Dispatch the new task to the cluster
            client.submit_job(fix_job)
        else:
            print("[SUCCESS] Run healthy. Agent sequence complete.")
    ''', tmp_path)
    assert "Agent is deploying a patch" in out
    assert client.wait("flaky_training_run_fix", timeout=30)["state"] == "COMPLETED"
    assert "patched in safe mode" in client.fetch_logs("flaky_training_run_fix")


def test_a_job_is_read_by_job_id_as_a_keyword_too(cluster: Cluster, tmp_path: Path) -> None:
    # Seed 002's agent calls client.fetch_logs(job_id), and the SDK's contract names it
    # fetch_logs(job_id) and get_job_status(job_id); the parameter was `ref`, so the same call
    # written fetch_logs(job_id=job_id) raised TypeError.
    (tmp_path / "train.py").write_text("print('epoch 1 of 1')\n")
    client = cluster.client()
    from titan_sdk import TitanJob

    client.submit_job(TitanJob(job_id="kw_training_run", filename=str(tmp_path / "train.py")))
    out = run_snippet(cluster, '''
        from titan_sdk import TitanClient

        client = TitanClient()
        job_id = "kw_training_run"
        print(client.wait_job(job_id=job_id, timeout=30)["state"])
        print(client.get_job_status(job_id=job_id), client.get_job(job_id=job_id)["job_id"])
        print(client.fetch_logs(job_id=job_id, attempt=1))
        print([e["line"] for e in client.iter_logs(job_id=job_id)])
    ''', tmp_path)
    assert out.splitlines() == ["COMPLETED", "COMPLETED kw_training_run", "epoch 1 of 1",
                                "['epoch 1 of 1']"]
    from titan.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="fetch_logs.*both"):
        client.fetch_logs("kw_training_run", job_id="kw_training_run")
    with pytest.raises(ValidationFailed, match=r"get_job_status\(\) needs the job"):
        client.get_job_status()


#: Seed 002's recursive agent, shipped as written (with a docstring and the one command that
#: submits it) in examples/.
STATEFUL_AGENT = Path(__file__).resolve().parents[2] / "examples/stateful_agent"


def test_recursive_agent_on_titan_store(cluster: Cluster, tmp_path: Path) -> None:
    client = cluster.client()
    from titan_sdk import TitanJob

    outcomes = set()
    for round_ in range(6):  # random: run the agent until both endings have been seen
        if round_ % 2:  # submitted once, by the SDK or by the example's one command
            job_id = f"autonomous_{round_}"
            client.submit_job(TitanJob(job_id=job_id,
                                       filename=str(STATEFUL_AGENT / "autonomous_agent.py")))
        else:
            dag = client.submit_yaml(str(STATEFUL_AGENT / "pipeline.yaml"))
            job_id = f"{dag['ref']}/autonomous_agent"
        last = client.wait(job_id, timeout=30)
        k = 1
        while "respawning" in client.fetch_logs(last["ref"]):
            last = client.wait(f"agent_retry_{k}", timeout=30)
            k += 1
        logs = client.fetch_logs(last["ref"])
        if "[SUCCESS]" in logs:
            assert last["state"] == "COMPLETED"
            outcomes.add("success")
        else:
            assert "[ESCALATION]" in logs and last["state"] == "FAILED" and k == 4
            outcomes.add("escalation")
        assert client.store_get("agent_retry_count") == "0"
        deadline = time.time() + 5
        while client.store_get("agent_retry_count") != "0" and time.time() < deadline:
            time.sleep(0.05)
    assert "success" in outcomes


def test_seed_001s_orchestrator_loop_waits_on_stage_signals(cluster: Cluster,
                                                           tmp_path: Path) -> None:
    # Seed 001's agentic loop names two helpers it does not define: wait_for_signal and
    # wait_for_signals (a stage puts a "...:done" key when it is done). They come with the SDK.
    (tmp_path / "planner.py").write_text(textwrap.dedent("""
        import json, sys
        from titan_sdk import TitanClient
        run_id = sys.argv[1]
        client = TitanClient()
        client.store_put(f"research:{run_id}:plan", json.dumps({"subtopics": ["a", "b"]}))
        client.store_put(f"research:{run_id}:planner:done", "1")
    """))
    (tmp_path / "researcher.py").write_text(textwrap.dedent("""
        import sys
        from titan_sdk import TitanClient
        run_id, topic = sys.argv[1], sys.argv[2]
        TitanClient().store_put(f"research:{run_id}:{topic}:done", f"notes on {topic}")
    """))
    out = run_snippet(cluster, """
        import json
        from titan_sdk import TitanClient, TitanJob, wait_for_signal, wait_for_signals

        client = TitanClient()
        run_id = "SEED001"
        planner_job = TitanJob(job_id="planner", filename="planner.py", args=[run_id])
        # Stage 1: Planner — decides what to research
        client.submit_dag("PLAN", [planner_job], agent_run_id=run_id)
        wait_for_signal(client, f"research:{run_id}:planner:done")
        # Plan JSON stored in TitanStore by the planner — no file read needed
        plan = json.loads(client.store_get(f"research:{run_id}:plan"))
        subtopics = plan["subtopics"]
        researcher_jobs = [TitanJob(job_id=f"researcher-{t}", filename="researcher.py",
                                    args=[run_id, t]) for t in subtopics]
        researcher_signal_keys = [f"research:{run_id}:{t}:done" for t in subtopics]
        # Stage 2: Parallel researchers — one per subtopic
        client.submit_dag("ITER1", researcher_jobs, agent_run_id=run_id)
        notes = wait_for_signals(client, researcher_signal_keys, timeout=60)
        print(sorted(notes.values()))
    """, tmp_path)
    assert out.strip() == "['notes on a', 'notes on b']"
    from titan.errors import WaitTimeout
    from titan_sdk import wait_for_signals

    with pytest.raises(WaitTimeout):
        wait_for_signals(cluster.client(), ["research:SEED001:a:done", "never:done"],
                         timeout=0.5)
    # One key as a string would be waited on character by character ('r', 'e', ...).
    from titan.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="a list of keys"):
        wait_for_signals(cluster.client(), "research:SEED001:a:done", timeout=0.5)
    # A bad key is refused before anything is waited on, not after the keys before it came
    # (with no timeout, a wait on "never:done" first would never get to it).
    started = time.monotonic()
    with pytest.raises(ValidationFailed, match="non-empty strings, got 7"):
        wait_for_signals(cluster.client(), ["never:done", 7])
    with pytest.raises(ValidationFailed, match="non-empty strings, got ''"):
        wait_for_signals(cluster.client(), (k for k in ["never:done", ""]))
    assert time.monotonic() - started < 10


def test_a_signal_is_waited_for_without_a_client_as_an_artifact_is_published(
        cluster: Cluster, tmp_path: Path) -> None:
    # A worker's script publishes with publish_artifact(key, filename), no client; the same
    # script's wait_for_signal(key) raised "missing 1 required positional argument: 'key'"
    # (the key it was given taken for the client), and wait_for_signal(key, 30) an
    # AttributeError on the string.
    (tmp_path / "waiter.py").write_text(textwrap.dedent("""
        from titan_sdk import publish_artifact, wait_for_signal, wait_for_signals
        plan = wait_for_signal("research:NOCLIENT:plan")
        more = wait_for_signal("research:NOCLIENT:plan", 30)
        both = wait_for_signals(["research:NOCLIENT:plan", "research:NOCLIENT:go"],
                                timeout=30)
        open("seen.txt", "w").write(f"{plan} {more} {sorted(both.values())}")
        publish_artifact("research:NOCLIENT:seen", "seen.txt")
    """))
    client = cluster.client()
    from titan_sdk import TitanJob, wait_for_signal, wait_for_signals

    dag = client.submit_dag("NOCLIENT", [TitanJob("waiter", str(tmp_path / "waiter.py"))])
    client.store_put("research:NOCLIENT:plan", "planned")
    client.store_put("research:NOCLIENT:go", "go")
    assert client.wait(dag, timeout=60)["status"] == "COMPLETED", \
        client.fetch_logs("NOCLIENT/waiter")
    assert client.read_artifact("research:NOCLIENT:seen")[1] == \
        b"planned planned ['go', 'planned']"
    # By name, a client or not; the key given twice is a usage error, as is none at all.
    assert wait_for_signal(key="research:NOCLIENT:go", timeout=5) == "go"
    assert wait_for_signal(client, key="research:NOCLIENT:go") == "go"
    assert wait_for_signals(keys=["research:NOCLIENT:go"], timeout=5) == \
        {"research:NOCLIENT:go": "go"}
    from titan.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="got key twice"):
        wait_for_signal(client, "research:NOCLIENT:go", key="research:NOCLIENT:go")
    with pytest.raises(ValidationFailed, match=r"wait_for_signal\(key"):
        wait_for_signal(client)
    # Left out, the client is the one this thread submitted through: a stage of it that
    # failed before signalling is still noticed, not waited on for ever.
    from titan.errors import StageFailed

    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    client.submit_dag("NOCLIENT_BAD", [TitanJob("bad", str(tmp_path / "broken.py"))])
    with pytest.raises(StageFailed, match="NOCLIENT_BAD#1 ended FAILED"):
        wait_for_signal("research:NOCLIENT:never", timeout=30)


def test_a_signal_from_a_stage_that_failed_is_not_waited_for_forever(
        cluster: Cluster, tmp_path: Path) -> None:
    # Seed 001's loop waits with no timeout: a stage failing before it signals (a typo, an
    # ImportError) held the orchestrator for ever, the stage FAILED on the Agent Runs page.
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    (tmp_path / "slow_signal.py").write_text(textwrap.dedent("""
        import sys, time
        from titan_sdk import TitanClient
        time.sleep(7)  # past a first look at the stages (every 5 s)
        TitanClient().store_put(sys.argv[1], "slow done")
    """))
    (tmp_path / "signals.py").write_text(textwrap.dedent("""
        import sys
        from titan_sdk import TitanClient
        TitanClient().store_put(sys.argv[1], "done")
        raise SystemExit(3)  # signalled first, then failed: the signal stands
    """))
    out = run_snippet(cluster, """
        import time
        from titan_sdk import TitanClient, TitanJob, wait_for_signal
        from titan.errors import StageFailed

        client = TitanClient()
        client.submit_dag("SIGFAIL_PLAN", [TitanJob("planner", "broken.py")],
                          agent_run_id="SIGFAIL")
        started = time.monotonic()
        try:
            wait_for_signal(client, "research:SIGFAIL:planner:done")
        except StageFailed as exc:
            print("raised", exc.dag["status"], exc.key, round(time.monotonic() - started))
            print(exc)
        client.submit_dag("SIGFAIL_LATE", [TitanJob("late", "signals.py",
                                                    args=["research:SIGFAIL:late:done"])],
                          agent_run_id="SIGFAIL")
        time.sleep(2)  # failed by now, after it signalled
        print("value", wait_for_signal(client, "research:SIGFAIL:late:done"))
        # The next stage fails without signalling: it is the one named, not the one above
        # (which signalled, then failed, and is still watched).
        client.submit_dag("SIGFAIL_NEXT", [TitanJob("next", "broken.py")],
                          agent_run_id="SIGFAIL")
        try:
            wait_for_signal(client, "research:SIGFAIL:next:done", timeout=60)
        except StageFailed as exc:
            print("blamed", exc.dag["name"])
        # A stage failing beside one still running does not fail a wait for the other's key.
        client.submit_dag("SIGFAIL_SLOW", [TitanJob("slow", "slow_signal.py",
                                                    args=["research:SIGFAIL:slow:done"])],
                          agent_run_id="SIGFAIL")
        client.submit_dag("SIGFAIL_OTHER", [TitanJob("other", "broken.py")],
                          agent_run_id="SIGFAIL")
        print("slow", wait_for_signal(client, "research:SIGFAIL:slow:done", timeout=60))
    """, tmp_path)
    lines = out.splitlines()
    raised, status, key, took = lines[0].split()
    assert (raised, status, key) == ("raised", "FAILED", "research:SIGFAIL:planner:done")
    assert int(took) <= 8, out  # checked every 2 s (STAGE_CHECK; it was 5)
    assert "SIGFAIL_PLAN#1 ended FAILED without signalling" in lines[1], out
    assert lines[-3:] == ["value done", "blamed SIGFAIL_NEXT", "slow slow done"], out


def test_publish_and_get_artifact_as_functions(cluster: Cluster, tmp_path: Path) -> None:
    # Seed 001: "Workers call publish_artifact(key, filename)": a function, as the seed's
    # wait_for_signal is one.
    (tmp_path / "worker.py").write_text(textwrap.dedent("""
        from titan_sdk import publish_artifact
        open("report.md", "w").write("# report\\n")
        publish_artifact("research:ART:report", "report.md")
    """))
    out = run_snippet(cluster, """
        from titan_sdk import TitanClient, TitanJob, get_artifact, publish_artifact

        client = TitanClient()
        client.submit_dag("ART_SYNTH", [TitanJob("synth", "worker.py")], agent_run_id="ART",
                          wait=True, timeout=60)
        print(open(get_artifact("research:ART:report", save_path="got.md")).read().strip())
        open("mine.txt", "w").write("mine")
        publish_artifact(client, "research:ART:mine", "mine.txt")
        print(open(get_artifact(client, "research:ART:mine", save_path="back.txt")).read())
    """, tmp_path)
    assert out.splitlines() == ["# report", "mine"]


def test_the_artifact_functions_take_their_arguments_by_name(cluster: Cluster,
                                                            tmp_path: Path) -> None:
    # Seed 001 names them publish_artifact(key, filename) and get_artifact(key, save_path=...);
    # written with those names as keywords, the functions raised TypeError ("unexpected
    # keyword argument 'key'") where the client's methods of the same names took them.
    (tmp_path / "worker.py").write_text(textwrap.dedent("""
        from titan_sdk import publish_artifact
        open("report.md", "w").write("# by name\\n")
        publish_artifact(key="research:KWART:report", filename="report.md")
    """))
    out = run_snippet(cluster, """
        from titan_sdk import TitanClient, TitanJob, get_artifact, publish_artifact

        client = TitanClient()
        client.submit_dag("KWART_SYNTH", [TitanJob("synth", "worker.py")],
                          agent_run_id="KWART", wait=True, timeout=60)
        print(open(get_artifact(key="research:KWART:report", save_path="a.md")).read().strip())
        print(open(get_artifact("research:KWART:report", save_path="b.md")).read().strip())
        open("mine.txt", "w").write("mine")
        publish_artifact(client, key="research:KWART:mine", filename="mine.txt")
        publish_artifact(client=client, key="research:KWART:mine2", filename="mine.txt")
        print(open(get_artifact(client, key="research:KWART:mine", save_path="c.txt")).read())
        print(open(get_artifact(client=client, key="research:KWART:mine2")).read())
    """, tmp_path)
    assert out.splitlines() == ["# by name", "# by name", "mine", "mine"]
    from titan.errors import ValidationFailed
    from titan_sdk import get_artifact, publish_artifact

    client = cluster.client()
    # Given twice, or not at all: said as a usage error, nothing published.
    with pytest.raises(ValidationFailed, match="got key twice"):
        publish_artifact(client, "research:KWART:x", key="research:KWART:y",
                         filename=str(tmp_path / "mine.txt"))
    with pytest.raises(ValidationFailed, match=r"publish_artifact\(key, filename\).*filename"):
        publish_artifact(client, key="research:KWART:x")
    with pytest.raises(ValidationFailed, match="got save_path twice"):
        get_artifact(client, "research:KWART:mine", "x.txt", save_path="y.txt")
    assert client.store_get("research:KWART:x") is None and \
        client.store_get("research:KWART:y") is None


def test_an_orchestrator_stopped_with_ctrl_c_ends_its_run_cancelled(
        cluster: Cluster, tmp_path: Path) -> None:
    # It ended "completed": the driver's exit hook let a KeyboardInterrupt pass as success.
    (tmp_path / "step.py").write_text("print('step')\n")
    (tmp_path / "driver.py").write_text(textwrap.dedent("""
        from titan_sdk import TitanClient, TitanJob
        client = TitanClient()
        client.submit_dag("CTRLC_PLAN", [TitanJob("plan", "step.py")], agent_run_id="CTRLC",
                          wait=True, timeout=60)
        raise KeyboardInterrupt
    """))
    done = subprocess.run([sys.executable, "driver.py"], cwd=tmp_path, env=cluster.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr
    deadline = time.monotonic() + 20
    while (run := cluster.api("GET", "/runs/CTRLC"))["status"] == "running":
        assert time.monotonic() < deadline, run
        time.sleep(0.1)
    assert (run["status"], run["error"]) == ("cancelled", "interrupted (KeyboardInterrupt)")


def test_a_submission_timeout_without_wait_is_refused_not_ignored(cluster: Cluster,
                                                                  tmp_path: Path) -> None:
    # submit_dag(..., timeout=60) without wait=True was accepted and the 60 dropped: a user
    # who meant the jobs' own time limit got jobs with none. `titan submit --timeout` without
    # --wait is refused for that reason; the SDK now refuses it too, before anything is sent.
    from titan.errors import ValidationFailed
    from titan_sdk import TitanJob

    (tmp_path / "forever.py").write_text("import time\ntime.sleep(3600)\n")
    client = cluster.client()
    job = TitanJob("forever", str(tmp_path / "forever.py"))
    for submit in (lambda: client.submit_dag("TIMEOUT_NOWAIT", [job], timeout=60),
                   lambda: client.submit_job(TitanJob("TIMEOUT_NOWAIT", job.filename),
                                             timeout=60)):
        with pytest.raises(ValidationFailed, match=r"timeout bounds the wait \(wait=True\)"
                                                   r".*TitanJob\(\.\.\., timeout=60\)") as exc:
            submit()
        assert exc.value.details["field"] == "timeout"
    (tmp_path / "pipeline.yaml").write_text(
        "name: TIMEOUT_NOWAIT\njobs:\n  - id: forever\n    file: forever.py\n")
    with pytest.raises(ValidationFailed, match="timeout bounds the wait"):
        client.submit_yaml(str(tmp_path / "pipeline.yaml"), timeout=60)
    assert client.list_dags(name="TIMEOUT_NOWAIT") == []
    # With wait, the timeout bounds the wait as before; a None timeout without wait is fine.
    (tmp_path / "quick.py").write_text("print('quick')\n")
    done = client.submit_dag("TIMEOUT_WAIT", [TitanJob("quick", str(tmp_path / "quick.py"))],
                             wait=True, timeout=60)
    assert done["status"] == "COMPLETED"
    assert client.submit_dag("TIMEOUT_NONE", [TitanJob("quick", str(tmp_path / "quick.py"))],
                             timeout=None)["run"] == 1
