"""The SDK's errors caught as a Python user catches them, against a real cluster: a wait that
runs out is a ``TimeoutError``, a missing job a ``LookupError``, a bad DAG a ``ValueError``, a
master that is not there a ``ConnectionError``, a script that is not on disk a
``FileNotFoundError`` — each still the Titan error it was (docs/sdk.md, Errors)."""

from __future__ import annotations

import time

import pytest

from tests.conftest import free_port
from tests.integration.harness import Cluster, shared_cluster
from titan import errors
from titan_sdk import TitanClient, TitanJob, wait_for_signal

cluster = shared_cluster()  # one `titan up` (a GENERAL worker) for the module


def test_a_wait_that_runs_out_is_a_timeout_error(cluster: Cluster) -> None:
    client = cluster.client()
    gpu = cluster.script("gpu_only.py", "print('on a GPU')\n")
    dag = client.submit_dag("sdk_errors_gpu", [TitanJob("g", gpu, requirement="GPU")])
    waits = {
        "store_wait": lambda: client.store_wait("sdk_errors:never", timeout=0.5),
        "wait_for_signal": lambda: wait_for_signal(client, "sdk_errors:never", timeout=0.5),
        "wait": lambda: client.wait(dag["ref"], timeout=0.5),
        "wait_job": lambda: client.wait_job("sdk_errors_gpu/g", timeout=0.5),
    }
    for name, wait in waits.items():
        started = time.monotonic()
        try:
            wait()
        except TimeoutError as exc:  # what asyncio, sockets and futures raise on a timeout
            assert isinstance(exc, errors.WaitTimeout), (name, exc)
            assert "0.5s" in str(exc), (name, str(exc))
        else:
            pytest.fail(f"{name} returned though nothing it waits for happened")
        assert time.monotonic() - started < 10, name
    client.cancel(dag["ref"])


def test_what_is_missing_is_a_lookup_error(cluster: Cluster) -> None:
    client = cluster.client()
    for lookup in (lambda: client.get_job_status("sdk_errors_no_such_job"),
                   lambda: client.get_dag("sdk_errors_no_such_dag"),
                   lambda: client.wait("sdk_errors_no_such_thing", timeout=1)):
        with pytest.raises(LookupError) as info:
            lookup()
        assert isinstance(info.value, errors.NotFound) and info.value.status == 404
        assert not isinstance(info.value, KeyError)
        assert "sdk_errors_no_such" in str(info.value)


def test_what_is_not_valid_is_a_value_error_and_nothing_is_stored(cluster: Cluster) -> None:
    client = cluster.client()
    with pytest.raises(ValueError, match="priority"):
        TitanJob("a", "a.py", priority="high")  # type: ignore[arg-type]
    script = cluster.script("noop.py", "pass\n")
    with pytest.raises(ValueError) as info:
        client.submit_dag("sdk_errors_cycle", [TitanJob("a", script, parents=["b"]),
                                               TitanJob("b", script, parents=["a"])])
    assert isinstance(info.value, errors.InvalidDAG) and "cycle" in str(info.value)
    with pytest.raises(LookupError):
        client.get_dag("sdk_errors_cycle")  # refused whole: nothing stored


def test_a_script_not_on_disk_is_a_file_not_found_error(cluster: Cluster) -> None:
    client = cluster.client()
    with pytest.raises(FileNotFoundError) as info:
        client.submit_job(TitanJob("lost", str(cluster.root / "no_such_script.py")))
    assert isinstance(info.value, errors.ScriptNotFound)
    assert "no_such_script.py" in str(info.value) and "[Errno" not in str(info.value)


def test_a_file_to_publish_or_upload_that_is_not_there_is_a_file_not_found_error(
        cluster: Cluster) -> None:
    client = cluster.client()
    missing = cluster.root / "no_such_report.md"
    for name, call in (("artifact", lambda: client.publish_artifact("sdk_errors:r", missing)),
                       ("file", lambda: client.upload_file(missing)),
                       ("project folder", lambda: client.upload_project_folder(missing))):
        with pytest.raises(FileNotFoundError) as info:
            call()
        exc = info.value
        # Named for what is missing (it was a ScriptNotFound, "artifact ... not found"), and
        # what caught it before still does.
        assert isinstance(exc, errors.LocalFileNotFound), (name, type(exc))
        assert isinstance(exc, errors.ScriptNotFound | errors.LocalFileError), name
        assert exc.filename == exc.path == str(missing), name
        assert str(exc).startswith(f"{name} {str(missing)!r} not found"), (name, str(exc))
    assert client.store_get("sdk_errors:r") is None  # nothing was published


def test_a_master_that_is_not_there_is_a_connection_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_MASTER_RESTART_GRACE", "0.5")
    with TitanClient(url=f"http://127.0.0.1:{free_port()}", token="t-none") as client, \
            pytest.raises(ConnectionError) as info:
        client.store_get("k")
    assert isinstance(info.value, errors.ConnectionFailed)
    assert "127.0.0.1" in str(info.value) and str(info.value) == info.value.args[0]
