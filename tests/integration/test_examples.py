"""The shipped examples of seed 002 (examples/README.md), each run as a user runs it: the file
in examples/, as a process, against `titan up` — not a copy of its code."""

from __future__ import annotations

import queue
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.harness import Cluster, shared_cluster

cluster = shared_cluster()

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(c: Cluster, relative: str, *args: str, cwd: Path | None = None,
                timeout: float = 600) -> str:
    out = subprocess.run([sys.executable, str(EXAMPLES / relative), *args], env=c.env,
                         cwd=cwd or c.root, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _lines_until(proc: subprocess.Popen[str], needle: str, timeout: float) -> str:
    """What ``proc`` wrote on stderr up to the line holding ``needle`` (read in a thread: the
    process goes on waiting, so its stderr does not end)."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr or ()],
                     daemon=True).start()
    said = ""
    deadline = time.monotonic() + timeout
    while needle not in said:
        try:
            said += lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {needle!r} within {timeout:g}s: {said!r}") from None
    return said


def test_the_readme_quickstart_runs_as_written(make_cluster: Callable[..., Cluster]) -> None:
    # README.md's first DAG, from examples/quickstart/: the SDK snippet, then the CLI lines.
    # A cluster of its own: the GPU example below names its DAG and jobs the same.
    cluster = make_cluster()
    cluster.up(slots=2)
    here = EXAMPLES / "quickstart"
    # Found by its data dir, which comes before the nearest .titan/ up from examples/quickstart:
    # a developer's own `titan up` or `make demo` in the checkout must not get these jobs.
    env = dict(cluster.env, TITAN_DATA_DIR=str(cluster.data))
    readme = (EXAMPLES.parent / "README.md").read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'filename="etl/extract.py"' in snippet
    out = subprocess.run([sys.executable, "-c", snippet], env=env, cwd=here,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("COMPLETED\n") and "trained on 7 rows" in out.stdout
    # Then every line of the CLI block, as written (a user copies them one by one).
    block = readme.split("or with the CLI:\n\n```bash\n", 1)[1].split("```", 1)[0]
    said = {}
    for line in block.splitlines():
        argv = shlex.split(line, comments=True)
        assert argv[0] == "../../.venv/bin/titan", line
        out = subprocess.run([sys.executable, "-m", "titan", *argv[1:]], env=env, cwd=here,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"{line}\n{out.stdout}{out.stderr}"
        said[" ".join(argv[1:3])] = out.stdout
    assert said["submit pipeline.yaml"].startswith("nightly_pipeline#2\n")
    assert "sales = 100.0 + 7.0 * day" in said["logs train_model"]
    assert said["submit etl/extract.py"].startswith("extract#1\n")
    # Each script the block submits ran to the end (one submitted without --wait too).
    client = cluster.client()
    scripts = [a for a in block.split() if a.endswith(".py")]
    assert len(scripts) >= 2, block
    for script in scripts:
        name = Path(script).stem
        assert client.wait_dag(name, timeout=120)["status"] == "COMPLETED", script


def test_the_logic_switch_picks_its_graph_from_the_load(cluster: Cluster) -> None:
    script = "dynamic_dag_custom/dynamic_dag_switch/dynamic_dag_switch.py"
    high = run_example(cluster, script, "--traffic", "95")
    assert "[HIGH]" in high and "fast scan of 1000 samples" in high
    # Measured on the idle cluster: low traffic, the DEEP DAG with its merge step.
    low = run_example(cluster, script)
    assert "[INFO] Traffic at 0 %" in low and "[LOW]" in low
    assert "deep analysis of 500000 values over 10 shards" in low
    client = cluster.client()
    deep = client.get_dag("DEEP_PIPELINE")
    assert deep["status"] == "COMPLETED" and deep["counts"]["COMPLETED"] == 11
    assert client.get_job("fast_scan")["state"] == "COMPLETED"


def test_the_gpu_job_waits_for_a_gpu_worker_then_runs_there(cluster: Cluster) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "worker_skill_based_test/gpu_project_test/"
                                        "gpu_project_test.py"), "--timeout", "120"],
        env=cluster.env, cwd=cluster.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        client = cluster.client()
        deadline = time.time() + 60
        while True:  # extract ran; train_model waits, saying why
            dags = client.list_dags(name="nightly_pipeline")
            if dags and client.get_job(f"{dags[0]['ref']}/extract_data")["state"] == "COMPLETED":
                train = client.get_job(f"{dags[0]['ref']}/train_model")
                assert train["state"] == "PENDING" and "GPU" in train["reason"]
                break
            assert time.time() < deadline, "extract_data did not run"
            time.sleep(0.1)
        cluster.add_worker(capabilities="GPU", slots=1, name="gpu-box")
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "train_model waits: waiting for a worker with capability GPU" in out
    assert "train_model   COMPLETED  on gpu-box (GPU)" in out
    assert "extract_data  COMPLETED  on local (GENERAL)" in out
    assert "trained on" in out and "y = 3.0" in out  # the rows extract_data left in the store


def test_the_code_healer_patches_until_the_run_is_healthy(cluster: Cluster) -> None:
    out = run_example(cluster, "agents_example/code_healer_agent.py")
    assert "[ERROR] CRITICAL ERROR in flaky_training_run#" in out
    assert "out_of_memory" in out and "[PATCH]" in out
    assert "[SUCCESS]" in out and "is healthy" in out
    client = cluster.client()
    run = client.api("GET", "/runs", params={"agent": "code-healer"})["runs"][0]
    assert run["status"] == "completed"
    # Each diagnosis is a recorded model call of the agent's run.
    actions = client.api("GET", f"/runs/{run['id']}/actions")["actions"]
    calls = [a for a in actions if a["name"] == "call_llm"]
    assert calls and len(calls) == out.count("[PATCH]")
    last_patch = out.strip().splitlines()[-1].split()[1]  # "[SUCCESS] <ref> is healthy..."
    assert "patched in safe mode: training finished" in client.fetch_logs(last_patch)


def test_the_doc_generator_plans_a_job_per_module_and_publishes_docs(
        cluster: Cluster, tmp_path: Path) -> None:
    out = run_example(cluster, "agents_example/doc_generator_agent/tools/doc_dispatcher.py",
                      "--out", str(tmp_path / "DOCS.md"))
    assert "[PLAN] 2 modules of sample_project" in out and "(3 jobs," in out
    docs = (tmp_path / "DOCS.md").read_text()
    assert docs.startswith("# sample_project")
    assert "## `inventory.py`" in docs and "## `pricing.py`" in docs
    # The API part is read from the code, exactly.
    assert "`order_total(base: float, quantity: int, tax_rate: float=0.2)`" in docs
    assert "  - `ship(self, sku: str, quantity: int)`: Take items out for an order" in docs
    # The seed's spelling of the path reaches the same file.
    assert (EXAMPLES / "agents_exampels/doc_generator_agent/tools/doc_dispatcher.py").is_file()


def _failing_example(c: Cluster, relative: str, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, str(EXAMPLES / relative), *args], env=c.env,
                         cwd=c.root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    # It failed inside its trace.run block: nothing for the SDK's exit to end again (it said
    # "[titan.trace] the master refused to update run …: already ended completed").
    assert "[titan.trace]" not in out.stderr, out.stderr
    return out


def test_the_doc_generator_fails_its_run_when_a_module_job_fails(cluster: Cluster,
                                                                 tmp_path: Path) -> None:
    # It returned 1 from inside its block: the block ended normally, the Runs page said the
    # run completed while the script said [FAILED] and exited 1.
    project = tmp_path / "broken_project"
    project.mkdir()
    (project / "broken.py").write_text("def broken(:\n")  # its job cannot parse it
    out = _failing_example(cluster, "agents_example/doc_generator_agent/tools/doc_dispatcher.py",
                           str(project), "--out", str(tmp_path / "DOCS.md"))
    assert "[FAILED] doc_generator#" in out.stderr and "(doc_0, assemble)" in out.stderr
    run_id = out.stdout.split(", run ")[1].split(")")[0]
    run = cluster.client().api("GET", f"/runs/{run_id}")
    assert run["status"] == "failed", run
    assert "[FAILED] doc_generator#" in run["error"]
    assert not (tmp_path / "DOCS.md").exists()


def test_the_code_healer_fails_its_run_when_it_gives_up(cluster: Cluster) -> None:
    out = _failing_example(cluster, "agents_example/code_healer_agent.py", "--max-patches", "0")
    assert "[ESCALATION] Still failing after 0 patches" in out.stderr
    run = cluster.client().api("GET", "/runs", params={"agent": "code-healer"})["runs"][0]
    assert run["status"] == "failed", run
    assert "[ESCALATION]" in (run["error"] or "")


def test_the_model_server_runs_as_a_service_is_called_and_stopped(cluster: Cluster) -> None:
    out = run_example(cluster, "services/run_services.py", timeout=180)
    assert "the model is at 127.0.0.1:" in out
    assert "positive (+3)  Titan is fast and works great" in out
    assert "negative (-2)  the old cron box was slow and broken" in out
    assert ": RUNNING, ready at 127.0.0.1:" in out and ", 0 restarts" in out
    assert out.rstrip().endswith(": COMPLETED (stopped on request)")
    log = cluster.client().fetch_logs("sentiment/model")
    assert "serving on 127.0.0.1:" in log and "SIGTERM: finishing the requests" in log


def test_the_builder_example_submits_as_it_is_and_waits_for_its_gate(cluster: Cluster) -> None:
    """examples/builder/nightly.yaml by its command (`titan submit --wait`), then its gate
    approved by the command the wait prints; the DAG builder's import reads it as the same
    four jobs and edges."""
    from titan.client.pipeline import load_pipeline
    from titan.dashboard.drafts import from_yaml

    pipeline = EXAMPLES / "builder" / "nightly.yaml"
    assert "titan submit examples/builder/nightly.yaml --wait" in pipeline.read_text()
    proc = subprocess.Popen([sys.executable, "-m", "titan", "submit", str(pipeline), "--wait"],
                            env=cluster.env, cwd=cluster.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # The wait says what the gate asks and how to decide it: the user's next command.
        said = _lines_until(proc, "titan approve ", timeout=60)
        assert "report.approval is WAITING_APPROVAL" in said and "Publish tonight's report?" \
            in said, said
        gate = said.split("titan approve ", 1)[1].split()[0].strip("'")
        assert gate.startswith("nightly_report#") and gate.endswith("/report.approval"), said
        approve = subprocess.run(
            [sys.executable, "-m", "titan", "approve", gate, "--comment", "ok"],
            env=cluster.env, cwd=cluster.root, capture_output=True, text=True, timeout=60)
        assert approve.returncode == 0, approve.stdout + approve.stderr
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    assert "COMPLETED (APPROVED 1, COMPLETED 4)" in out
    client = cluster.client()
    assert client.store_smembers("nightly_report/steps") == {
        "extract", "validate", "report", "publish"}
    name, jobs = load_pipeline(pipeline)
    assert name == "nightly_report" and [j.job_id for j in jobs] == [
        "extract", "validate", "report", "publish"]
    _, drafts = from_yaml(pipeline.read_text(), "nightly_report")
    edges = {(d["job_id"], p) for d in drafts for p in d.get("parents") or []}
    assert edges == {("report", "extract"), ("report", "validate"), ("publish", "report")}


# The recursive agent (examples/stateful_agent) runs in test_seed_002.py, by its one command too.


ROOT = EXAMPLES.parent


def test_seed_002s_example_folders_run_by_their_paths(cluster: Cluster) -> None:
    # Seed 002 lists its deterministic examples as folders ("run it as `python <name>`"):
    # `python titan_test_suite/examples/dynamic_dag_custom/dynamic_dag_switch` said "can't
    # find '__main__' module" and ran nothing.
    # Named outright: from the checkout's root, a `make demo` left running there (its
    # ./.titan) is the master TitanClient() would find first.
    env = dict(cluster.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(cluster.port),
               TITAN_TOKEN=cluster.admin_token)

    def run(folder: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, f"titan_test_suite/examples/{folder}", *args],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)

    switch = run("dynamic_dag_custom/dynamic_dag_switch", "--traffic", "95")
    assert switch.returncode == 0, switch.stdout + switch.stderr
    assert "[HIGH]" in switch.stdout and "fast scan of 1000 samples" in switch.stdout
    # No GPU worker need be there: the pipeline is submitted and its GPU job waits (or runs,
    # when another test's GPU worker is up); the folder ran the example either way.
    gpu = run("worker_skill_based_test/gpu_project_test", "--timeout", "3")
    assert "DAG Submitted Successfully! (nightly_pipeline#" in gpu.stdout, gpu.stdout + gpu.stderr
    ref = gpu.stdout.split("(", 1)[1].split(")", 1)[0]
    from titan.errors import Conflict

    try:  # its GPU job would take the GPU worker another test adds
        cluster.client().cancel(ref)
    except Conflict:  # finished already: there was a GPU worker
        pass
