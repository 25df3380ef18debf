"""The Titan version a registering worker runs, as the master records it: said in its body, else
in its User-Agent (a worker of an earlier version), and only when it is a plain version string
(a worker may say anything; the CLI and the Cluster page show it)."""

from __future__ import annotations

from titan.master.scheduling.worker_fields import worker_version


def test_the_body_then_the_user_agent() -> None:
    assert worker_version({"version": "0.2.0"}, "titan-worker/0.1.0") == "0.2.0"
    assert worker_version({}, "titan-worker/0.1.0") == "0.1.0"
    assert worker_version({"version": 3}, "titan-worker/0.1.0+local.1") == "0.1.0+local.1"
    assert worker_version({}, "python-httpx/0.27") is None
    assert worker_version({}, None) is None


def test_what_is_not_a_version_is_not_kept() -> None:
    for said in ("", "1.0 beta", "\x1b]0;owned\x07", "<b>1</b>", "9" * 65):
        assert worker_version({"version": said}, None) is None, said
    assert worker_version({}, "titan-worker/<script>") is None
