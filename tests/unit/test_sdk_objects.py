"""The SDK's objects as Python values: a TitanJob pickles and copies (users hand jobs to
multiprocessing and build DAGs from template jobs) and its repr says what the job is; a
TitanClient's repr, and its endpoint's, never show the token."""

from __future__ import annotations

import copy
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from titan.client import TitanClient, TitanJob


def _template() -> TitanJob:
    return TitanJob("train", "ml/train.py", args=["--epochs", "3"], parents=["extract"],
                    priority=5, requirement="GPU", retries=2, env={"API_KEY": "s3cret-value"},
                    hitl_message="ship the model?", max_wait_seconds=60)


def _renamed(job: TitanJob, job_id: str) -> TitanJob:
    """What a job sent to another process comes back as, changed there."""
    job.job_id = job_id
    job.args.append("--fast")
    return job


def test_a_job_pickles_and_copies_with_every_field() -> None:
    job = _template()
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(job, protocol))
        assert back == job and back.env == {"API_KEY": "s3cret-value"}
        assert back.checked() is back  # unchanged: sent as it is, not checked again
    deep = copy.deepcopy(job)
    assert deep == job
    deep.args.append("--more")
    deep.env["OTHER"] = "1"
    assert job.args == ["--epochs", "3"] and "OTHER" not in job.env  # the template is intact
    assert deep.checked() == deep and deep.checked() is not deep  # changed: checked again


def test_jobs_built_from_a_template_in_other_processes() -> None:
    with ProcessPoolExecutor(max_workers=1) as pool:
        jobs = list(pool.map(_renamed, [_template(), _template()], ["train_a", "train_b"],
                             timeout=60))
    assert [j.job_id for j in jobs] == ["train_a", "train_b"]
    assert all(j.args == ["--epochs", "3", "--fast"] for j in jobs)
    assert jobs[0].checked().to_payload(None)["job_id"] == "train_a"


def test_a_jobs_repr_says_what_it_is_but_no_env_value() -> None:
    said = repr(_template())
    for part in ("job_id='train'", "filename='ml/train.py'", "args=['--epochs', '3']",
                 "parents=['extract']", "priority=5", "requirement='GPU'", "retries=2",
                 "hitl_message='ship the model?'", "max_wait_seconds=60", "'API_KEY'"):
        assert part in said, (part, said)
    assert "s3cret" not in said  # env is where secrets go: their names only
    # The defaults are left out: a plain job reads as it was written.
    assert repr(TitanJob("a", "a.py")) == "TitanJob(job_id='a', filename='a.py')"
    assert repr(TitanJob("gate", job_type="APPROVAL")) == \
        "TitanJob(job_id='gate', job_type='APPROVAL')"
    service = TitanJob("web", "web.py", job_type="SERVICE", readiness="http:/health")
    assert repr(service) == \
        "TitanJob(job_id='web', filename='web.py', job_type='SERVICE', readiness='http:/health')"


def test_a_clients_repr_never_shows_its_token() -> None:
    with TitanClient(url="http://127.0.0.1:9", token="t-very-secret-token") as client:
        assert client.endpoint.token == "t-very-secret-token"
        for shown in (repr(client), str(client), repr(client.endpoint), str(client.endpoint)):
            assert "very-secret" not in shown, shown
            assert "127.0.0.1:9" in shown, shown


def test_a_client_refuses_pickling_saying_why_and_without_its_token() -> None:
    # It holds open connections (and its token): each process makes its own client.
    with TitanClient(url="http://127.0.0.1:9", token="t-very-secret-token") as client, \
            pytest.raises(TypeError, match="make a TitanClient in each process") as info:
        pickle.dumps(client)
    assert "very-secret" not in str(info.value)
