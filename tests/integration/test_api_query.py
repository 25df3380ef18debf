"""Query strings against a real `titan up`: a route takes the parameters it declares and
refuses any other (a typo is an error: ``?state=FAILED`` answered every DAG), over raw HTTP,
and Titan's own callers (the SDK, the CLI, the dashboard) send only what the routes take."""

from __future__ import annotations

import pytest

from tests.integration.harness import Cluster, shared_cluster
from tests.integration.test_api_contract import assert_error, call
from tests.integration.test_live_events import closed_with
from titan.errors import WaitTimeout

cluster = shared_cluster(slots=1)


def test_an_unknown_query_parameter_is_refused_naming_the_one_meant(cluster: Cluster) -> None:
    call(cluster, "POST", "/dags", {"name": "query-typo", "jobs": [
        {"job_id": "gate", "job_type": "APPROVAL", "hitl_message": "ok?"}]})
    err = assert_error(*call(cluster, "GET", "/dags?state=FAILED"), 400, "invalid_request")
    assert err["details"]["field"] == "state", err
    assert "unknown query parameter 'state'" in err["message"], err
    assert "did you mean 'status'?" in err["message"], err
    # Every route, reads and writes, those with parameters and those without.
    for method, path, field in [("GET", "/runs?stauts=failed", "stauts"),
                                ("GET", "/jobs/query-typo/gate?attempts=1", "attempts"),
                                ("GET", "/whoami?verbose=1", "verbose"),
                                ("GET", "/store?perfix=a", "perfix"),
                                ("POST", "/dags/query-typo/cancel?force=true", "force"),
                                ("GET", "/health?x=1", "x")]:
        err = assert_error(*call(cluster, method, path), 400, "invalid_request")
        assert err["details"]["field"] == field, (path, err)
    # Nothing was done: the refused cancel left the DAG running.
    assert call(cluster, "GET", "/dags/query-typo")[1]["status"] == "RUNNING"
    # A parameter the route declares (an alias such as master-proof's `for` included) goes.
    status, page = call(cluster, "GET", "/dags?status=RUNNING&name=query-typo&limit=5")
    assert status == 200 and [d["name"] for d in page["dags"]] == ["query-typo"], page
    status, body = call(cluster, "GET", "/master-proof?nonce=" + "0" * 32 + "&ref=x&for=/a")
    assert "unknown query parameter" not in str(body), body
    # Without a credential it is 401 first, as with the parameter right.
    assert_error(*call(cluster, "GET", "/dags?state=FAILED", token=None), 401, "unauthorized")


def test_the_events_socket_refuses_an_unknown_parameter(cluster: Cluster) -> None:
    auth = {"Authorization": f"Bearer {cluster.admin_token}"}
    code, reason = closed_with(cluster, "?type=dag_created", **auth)
    assert code == 4400 and "did you mean 'types'?" in reason, reason


def test_titans_own_callers_send_only_declared_parameters(cluster: Cluster) -> None:
    """The SDK's listings and waits, each with every parameter it sends."""
    client = cluster.client()
    call(cluster, "POST", "/dags", {"name": "query-sdk", "jobs": [
        {"job_id": "gate", "job_type": "APPROVAL", "hitl_message": "ok?"}]})
    with pytest.raises(WaitTimeout):
        client.wait_dag("query-sdk", timeout=0.2, jobs=False)
    with pytest.raises(WaitTimeout):
        client.wait_job("query-sdk/gate", timeout=0.2)
    assert client.list_dags(status="RUNNING", name="query-sdk", limit=5, offset=0)
    assert client.get_dag("query-sdk", jobs=False)["name"] == "query-sdk"
    assert client.dag_jobs("query-sdk", state=["WAITING_APPROVAL", "PENDING"], limit=5)
    assert client.fetch_logs("query-sdk/gate") == ""
    client.store_put("query-k", "v")
    assert client.store_keys("query-") == ["query-k"]
    assert client.store_wait("query-k", timeout=5) == "v"
    assert client.agent_runs(limit=5, offset=0) is not None


def test_a_parameter_given_twice_is_refused_unless_it_is_a_list(cluster: Cluster) -> None:
    # ?limit=1&limit=2 read 2, where a proxy or a log may read 1.
    for path, field in [("/dags?limit=1&limit=2", "limit"),
                        ("/jobs?ref=a&ref=b", "ref"),
                        ("/store?prefix=a&limit=5&prefix=b", "prefix"),
                        ("/runs?limit=1&status=failed&limit=1", "limit")]:
        err = assert_error(*call(cluster, "GET", path), 400, "invalid_request")
        assert err["details"]["field"] == field, (path, err)
        assert f"the query parameter {field!r} is given 2 times" in err["message"], err
    # A list filter means all its values, given repeated.
    assert call(cluster, "GET", "/runs?status=failed&status=completed")[0] == 200
    call(cluster, "POST", "/dags", {"name": "query-twice", "jobs": [
        {"job_id": "gate", "job_type": "APPROVAL", "hitl_message": "ok?"}]})
    status, page = call(cluster, "GET",
                        "/dags/query-twice/jobs?state=PENDING&state=WAITING_APPROVAL")
    assert status == 200 and page["total"] == 1, page


def test_an_empty_reference_is_a_bad_request_not_a_missing_job(cluster: Cluster) -> None:
    # "no job ''" (404) read as a job deleted since; an empty reference names nothing.
    for path, what in [("/jobs?ref=", "job"), ("/jobs//wait?timeout=0", "job"),
                       ("/dags//wait?timeout=0", "DAG")]:
        err = assert_error(*call(cluster, "GET", path), 400, "invalid_request")
        assert err["details"]["field"] == "ref", (path, err)
        assert f"the {what} reference is empty" in err["message"], (path, err)
    assert_error(*call(cluster, "GET", "/jobs?ref=nope"), 404, "not_found")
