"""The DRIVER stage of a replay: lay out the recorded code, run the driver, end the run.

Runs as a job of the replay's run (the master submits it; ``TITAN_REPLAY`` is in its
environment). It downloads the files of the code being replayed — the original's, or the
current ones — into its workspace in their recorded relative layout, changes to the recorded
working directory and runs the driver script as ``__main__`` with its recorded arguments, as
``python driver.py ARGS`` did, the original run's id among them made the replay's. The
driver's stages join the replay's run. When the driver ends, stages it left running are
cancelled, the run is ended (completed if the driver exited 0, cancelled if a
KeyboardInterrupt ended it, else failed) and the report's summary is printed to this job's
log.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
import time
import traceback
from pathlib import Path, PurePosixPath
from typing import Any

from titan import errors
from titan.client import replay_keys, replayed_files, worktree
from titan.formats import cost_text
from titan.url_paths import quote_ref

#: Seconds a replay waits for the stages still going once its driver is done.
STAGE_GRACE = 60.0


def _layout(client: Any, code: dict[str, Any], base: Path) -> tuple[Path, Path]:
    files: dict[str, str] = code["files"]
    driver = code["driver"]
    dirs = [str(PurePosixPath(p).parent) for p in files] + [driver["cwd"]]
    root = os.path.commonpath(dirs)
    copies: dict[str, Path] = {}
    for path, sha in sorted(files.items()):
        dest = copies[path] = base / os.path.relpath(path, root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(client._transport.send("GET", f"/blobs/{sha}").content)
    # A job script the driver names by its absolute path is its copy here, not the file on
    # this machine's disk now (edited since, or moved away).
    replayed_files.publish(copies, base.with_name(f"{base.name}.files.json"))
    return base / os.path.relpath(driver["path"], root), base / os.path.relpath(driver["cwd"],
                                                                             root)


def _not_laid_out(exc: BaseException, run: dict[str, Any], base: Path) -> str | None:
    """What to say when the driver failed on a job script or a module that is not among the
    files this replay laid out (None when that is not why): where the replay's files came
    from, and how to include it."""
    files = list(run["code"]["files"])
    if isinstance(exc, errors.ScriptNotFound):
        what, package = "that script", ""
    elif isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        ours = {PurePosixPath(p).stem for p in files} | {
            PurePosixPath(p).parent.name for p in files if PurePosixPath(p).name == "__init__.py"}
        if top in ours:
            return None  # laid out: something else is missing from it
        what = f"module {exc.name!r}"
        package = " (a package not of the agent's must be installed in the worker's Python)"
    else:
        return None
    original = run["replay_of"]
    where = ", ".join(worktree.roots(files))
    if (run.get("replay") or {}).get("code") == "current":
        return (f"{what} is not part of the replayed code: the replay laid out {len(files)} "
                f"file(s) in {base}, the run's recorded files as they are now and the .py/.sh "
                f"files beside them under {where}, on the machine that started it. Put it "
                f"there and replay again{package}")
    return (f"{what} is not part of the recorded code: the replay laid out the {len(files)} "
            f"file(s) run {original} recorded in {base}: its driver, the modules it imported "
            f"from its own folder and the job scripts it submitted. A file under {where} is "
            f"sent by `titan replay {original} --code current` run on that machine; one "
            f"elsewhere must be moved there{package}")


def _cost(side: dict[str, Any] | None) -> str:
    if side is None:
        return "-"
    return cost_text(side["cost_usd"], side.get("unpriced_calls") or 0)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def main() -> int:
    from titan import trace
    from titan.client import TitanClient
    from titan.trace import context, runs

    # The driver ran outside any run until its first stage, and recorded its own calls from
    # there on: in this job, which is in the replay's run from the start, so does it.
    context.replaying_driver()
    client = TitanClient()
    run_id = os.environ["TITAN_AGENT_RUN_ID"]
    run = client.api("GET", f"/runs/{quote_ref(run_id)}")
    code = run["code"]
    runs.replaying_blocks(run["replay_of"], code)  # which `trace.run` block was the replayed
    base = Path.cwd() / "replay" / run_id
    script, cwd = _layout(client, code, base)
    cwd.mkdir(parents=True, exist_ok=True)
    # A driver given its run id on its command line is given the replay's: what it writes
    # under that name (a report file) is the replay's own, never the original run's.
    args = replay_keys.driver_args(code["driver"]["args"], run["replay_of"], run_id)
    print(f"[replay] {run_id}: replaying {run['replay_of']} "
          f"({run['replay'].get('mode', 'strict')} mode, {run['replay'].get('code')} code): "
          f"python {script.name} {' '.join(args)}", flush=True)
    home = os.getcwd()
    os.chdir(cwd)
    sys.argv = [str(script), *args]
    # The driver's folder first, as `python driver.py` has it; inserted, not written over
    # sys.path[0]: in a job that entry may be where titan itself was found, and a process
    # the driver starts by spawn (its sys.path is this one) could not import titan.
    sys.path.insert(0, str(script.parent))
    status, error, interrupted = 0, None, False
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        status = _exit_code(exc)
    except BaseException as exc:  # noqa: BLE001 - the driver's failure is the replay's result
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
        hint = _not_laid_out(exc, run, base)
        if hint is not None:
            print(f"[replay] {hint}", file=sys.stderr, flush=True)
            error = f"{error[:1000]} — {hint}"
        status, error = 1, error[:2000]
        # The original ended by Ctrl-C (a KeyboardInterrupt) was cancelled, by its
        # `with titan.trace.run` block or at exit: so is its replay, which raised it again.
        interrupted = isinstance(exc, KeyboardInterrupt)
    finally:
        os.chdir(home)
    trace.flush(30)
    # Stages still going when the driver is done: the original's ran on and ended its run
    # when they finished, so the replay's do too (for STAGE_GRACE seconds at most), and
    # what they record is in the report. Cancelled at once, a stage that had signalled its
    # driver was killed before its recorder had sent its calls: reported missing (a QA
    # pass). A driver that failed or stopped leaves nothing worth waiting for.
    deadline = time.monotonic() + (STAGE_GRACE if status == 0 else 0.0)
    for dag in client.list_dags(agent_run_id=run_id, limit=1000):
        if dag["status"] in ("WAITING", "RUNNING") and not dag["name"].endswith("_DRIVER"):
            left = deadline - time.monotonic()
            if left > 0:
                with contextlib.suppress(errors.WaitTimeout):
                    client.wait_dag(dag["id"], timeout=left)
                    continue
            client.cancel(dag["ref"])
    # Ended as the original's driver ends its run: completed unless its last stage did not
    # (the master decides, from the stages; a replayed agent stage that FAILED was reported
    # completed here).
    end: dict[str, Any] = {"status": "ended" if status == 0 else "failed"}
    if interrupted:
        end = {"status": "cancelled", "error": "interrupted (KeyboardInterrupt)"}
    elif status != 0:
        end["error"] = error or f"the replayed driver exited with status {status}"
    elif runs.replayed_end is not None:
        # The script's own `with titan.trace.run(...)` block ended the original run as it
        # ended here (failed, though the script caught the error and exited 0): so it ends
        # the replay, as it ended the original.
        end = dict(runs.replayed_end)
    client.api("PATCH", f"/runs/{quote_ref(run_id)}", json=end)
    report = client.api("GET", f"/runs/{quote_ref(run_id)}/replay")
    rate = report["match_rate"]
    print(f"[replay] {run_id}: {report['matched']}/{report['recorded']} recorded calls matched"
          f" ({'—' if rate is None else f'{rate:.0%}'}), {report['divergence_count']} "
          f"divergence(s), {report.get('live_calls') or 0} live call(s); cost "
          f"{_cost(report['replay'])} against "
          f"{_cost(report['original'])}", flush=True)
    for d in report["divergences"][:10]:
        print(f"[replay]   {d['kind']}: {d['actor']} {d['channel']} {d['name']} "
              f"#{d['ordinal']}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
