"""A store key holds one kind of thing: a value (a string; a counter is a value holding an
integer, an artifact's key a value naming its file) or a set. An operation on a key of the
other kind is a clear 409 ``wrong_kind`` naming the key and what it holds, from the API, the
SDK (:class:`~titan.errors.WrongKind`) and the CLI alike — not a silent ``None``, an empty
set, a wait that never ends, or a value written beside the set (Redis's WRONGTYPE). Every
combination against a real master."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.harness import Cluster, shared_cluster
from tests.integration.test_api_contract import assert_error, call
from titan.errors import Conflict, NotFound, ValidationFailed, WrongKind

cluster = shared_cluster()


def cli(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(c.env, TITAN_HOST="127.0.0.1", TITAN_PORT=str(c.port), TITAN_TOKEN=c.admin_token)
    return subprocess.run([sys.executable, "-m", "titan", *args], env=env, cwd=c.root,
                          capture_output=True, text=True, timeout=60)


def refused(exc: pytest.ExceptionInfo[WrongKind], key: str, holds: str) -> None:
    assert isinstance(exc.value, Conflict) and exc.value.status == 409
    assert exc.value.code == "wrong_kind"
    assert exc.value.details == {"key": key, "holds": holds}, exc.value.details
    assert f"store key {key!r} holds a {holds}" in str(exc.value), exc.value


def test_a_set_is_not_read_or_overwritten_as_a_value(cluster: Cluster, tmp_path: Path) -> None:
    client = cluster.client()
    client.store_sadd("kinds/set", "a")
    client.store_sadd("kinds/set", "b")
    # Each value operation on a set is refused, and the set is left as it was.
    with pytest.raises(WrongKind) as exc:
        client.store_get("kinds/set")  # was None, as if the key were absent
    refused(exc, "kinds/set", "set")
    assert "store_smembers" in str(exc.value)
    with pytest.raises(WrongKind) as exc:
        client.store_put("kinds/set", "v")  # was a value written beside the set
    refused(exc, "kinds/set", "set")
    with pytest.raises(WrongKind) as exc:
        client.store_incr("kinds/set")  # was a counter written beside the set
    refused(exc, "kinds/set", "set")
    with pytest.raises(WrongKind) as exc:
        client.store_wait("kinds/set", timeout=5)  # waited for a value that cannot come
    refused(exc, "kinds/set", "set")
    artifact = tmp_path / "report.md"
    artifact.write_text("# report\n")
    with pytest.raises(WrongKind) as exc:
        client.publish_artifact("kinds/set", artifact)
    refused(exc, "kinds/set", "set")
    # A large one is refused before its body is taken (the SDK reads the early answer).
    (tmp_path / "big.bin").write_bytes(os.urandom(3 << 20))
    with pytest.raises(WrongKind) as exc:
        client.publish_artifact("kinds/set", tmp_path / "big.bin")
    refused(exc, "kinds/set", "set")
    with pytest.raises(NotFound):  # nothing was published under the key
        client.read_artifact("kinds/set")
    assert client.store_smembers("kinds/set") == {"a", "b"}
    assert [k for k in client.api("GET", "/store", params={"prefix": "kinds/set"})["keys"]
            if k["kind"] == "value"] == []
    # Deleted, the key takes a value.
    assert client.store_delete("kinds/set") is True
    client.store_put("kinds/set", "now a value")
    assert client.store_get("kinds/set") == "now a value"
    client.store_delete("kinds/set")


def test_a_value_is_not_read_or_extended_as_a_set(cluster: Cluster) -> None:
    client = cluster.client()
    client.store_put("kinds/value", "plain")
    with pytest.raises(WrongKind) as exc:
        client.store_sadd("kinds/value", "m")  # was a set written beside the value
    refused(exc, "kinds/value", "value")
    with pytest.raises(WrongKind) as exc:
        client.store_smembers("kinds/value")  # was an empty set, as if absent
    refused(exc, "kinds/value", "value")
    assert "store_get" in str(exc.value)
    # A value is overwritten by a value, as always; incrementing text says what it holds.
    client.store_put("kinds/value", "other")
    assert client.store_get("kinds/value") == "other"
    with pytest.raises(ValidationFailed, match="store key 'kinds/value' holds 'other', which "
                                               "is not an integer"):
        client.store_incr("kinds/value")
    assert client.store_get("kinds/value") == "other"


def test_a_counter_is_a_value(cluster: Cluster) -> None:
    # Seed 002: a counter read with store_get and reset with store_put("...", "0").
    client = cluster.client()
    assert client.store_incr("kinds/counter", by=3) == 3
    assert int(client.store_get("kinds/counter") or 0) == 3
    client.store_put("kinds/counter", "0")
    assert client.store_incr("kinds/counter") == 1
    assert client.store_wait("kinds/counter", timeout=0) == "1"
    for op in (lambda: client.store_sadd("kinds/counter", "m"),
               lambda: client.store_smembers("kinds/counter")):
        with pytest.raises(WrongKind) as exc:
            op()
        refused(exc, "kinds/counter", "value")
    assert client.store_get("kinds/counter") == "1"


def test_an_artifact_key_is_a_value_naming_its_file(cluster: Cluster, tmp_path: Path) -> None:
    client = cluster.client()
    (tmp_path / "plot.png").write_bytes(b"\x89PNG one")
    client.publish_artifact("kinds/artifact", tmp_path / "plot.png")
    assert client.store_get("kinds/artifact") == "plot.png"
    for op in (lambda: client.store_sadd("kinds/artifact", "m"),
               lambda: client.store_smembers("kinds/artifact")):
        with pytest.raises(WrongKind) as exc:
            op()
        refused(exc, "kinds/artifact", "value")
    with pytest.raises(ValidationFailed, match="not an integer"):
        client.store_incr("kinds/artifact")
    # A value put over it is a value like any other; the file stays published under the key.
    client.store_put("kinds/artifact", "see plot.png")
    assert client.read_artifact("kinds/artifact") == ("plot.png", b"\x89PNG one")
    # Publishing over a value (a counter, a note) replaces it with the file's name, as
    # publish_artifact always did: the key is the artifact's now.
    client.store_put("kinds/note", "draft")
    (tmp_path / "final.txt").write_text("final")
    client.publish_artifact("kinds/note", tmp_path / "final.txt")
    assert client.store_get("kinds/note") == "final.txt"
    client.store_incr("kinds/count")
    client.publish_artifact("kinds/count", tmp_path / "final.txt")
    assert client.store_get("kinds/count") == "final.txt"


def test_the_api_says_409_wrong_kind_naming_key_and_kind(cluster: Cluster) -> None:
    client = cluster.client()
    client.store_sadd("kinds/raw set", "m")
    client.store_put("kinds/raw value", "v")
    s, v = quote("kinds/raw set", safe=""), quote("kinds/raw value", safe="")
    for method, path, body, key, holds in (
            ("GET", f"/store/values/{s}", None, "kinds/raw set", "set"),
            ("PUT", f"/store/values/{s}", {"value": "x"}, "kinds/raw set", "set"),
            ("POST", f"/store/incr/{s}", {"by": 1}, "kinds/raw set", "set"),
            ("GET", f"/store/wait/{s}?timeout=0", None, "kinds/raw set", "set"),
            ("POST", f"/store/sets/{v}", {"member": "m"}, "kinds/raw value", "value"),
            ("GET", f"/store/sets/{v}", None, "kinds/raw value", "value")):
        status, reply = call(cluster, method, path, body)
        error = assert_error(status, reply, 409, "wrong_kind")
        assert error["details"] == {"key": key, "holds": holds}, (method, path, reply)
        assert error["message"].startswith(f"store key {key!r} holds a {holds}"), reply
    status, reply = call(cluster, "POST", f"/artifacts?key={s}&name=a.txt", raw_body=b"x")
    assert_error(status, reply, 409, "wrong_kind")
    assert call(cluster, "GET", f"/artifacts?key={s}")[0] == 404
    # DELETE takes whatever the key holds.
    assert call(cluster, "DELETE", f"/store/values/{s}")[1]["deleted"] is True
    assert call(cluster, "DELETE", f"/store/values/{v}")[1]["deleted"] is True


def test_the_cli_says_what_the_key_holds(cluster: Cluster) -> None:
    client = cluster.client()
    client.store_sadd("kinds/cli", "m")
    got = cli(cluster, "store", "get", "kinds/cli")
    # It said "no value for store key" (exit 1), as if the key were absent.
    assert got.returncode == 1 and "Traceback" not in got.stderr, got.stderr
    assert "store key 'kinds/cli' holds a set" in got.stderr, got.stderr
    put = cli(cluster, "store", "put", "kinds/cli", "v")
    assert put.returncode == 1 and "store key 'kinds/cli' holds a set" in put.stderr, put.stderr
    assert client.store_smembers("kinds/cli") == {"m"}
    assert cli(cluster, "store", "delete", "kinds/cli").returncode == 0
    assert cli(cluster, "store", "put", "kinds/cli", "v").returncode == 0
    assert cli(cluster, "store", "get", "kinds/cli").stdout == "v\n"


def test_a_parked_wait_hears_of_a_set_made_at_its_key(cluster: Cluster) -> None:
    client = cluster.client()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            client.store_wait("kinds/later set", timeout=60)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive()
    started = time.monotonic()
    cluster.client().store_sadd("kinds/later set", "m")
    thread.join(30)
    assert not thread.is_alive() and time.monotonic() - started < 10
    assert len(errors) == 1 and isinstance(errors[0], WrongKind), errors


def test_a_key_stored_with_both_kinds_before_still_reads(cluster: Cluster) -> None:
    """Before one kind per key, a key could hold a value and a set at once: both still read,
    list and delete; a write to it is refused until it is deleted."""
    assert cluster.master is not None
    os.killpg(cluster.master.pid, signal.SIGKILL)
    cluster.master.wait()
    db = sqlite3.connect(cluster.data / "titan.db")
    with db:
        for i in range(4):
            db.execute("INSERT INTO store_values VALUES (?, 'v', 1.0)", (f"walk{i}",))
            db.execute("INSERT INTO store_sets VALUES (?, 'm', 1.0)", (f"walk{i}",))
        db.execute("INSERT INTO store_sets VALUES ('walk1b', 'm', 1.0)")
        db.execute("INSERT INTO store_values VALUES ('both', 'v', 1.0)")
        for m in "xyz":
            db.execute("INSERT INTO store_sets VALUES ('both', ?, 1.0)", (m,))
    db.close()
    cluster.up()
    client = cluster.client()
    assert client.store_get("both") == "v"
    assert client.store_wait("both", timeout=0) == "v"
    assert client.store_smembers("both") == {"x", "y", "z"}
    with pytest.raises(WrongKind) as exc:
        client.store_put("both", "w")
    refused(exc, "both", "set")
    with pytest.raises(WrongKind) as exc:
        client.store_sadd("both", "w")
    refused(exc, "both", "value")
    # Listed once per kind, the value first, and a page never splits them: paged by its key,
    # the next page began after it and the set was on no page. limit=1 takes both.
    for limit in (5, 1):
        status, body = call(cluster, "GET", f"/store?prefix=both&limit={limit}")
        assert [(k["key"], k["kind"]) for k in body["keys"]] == [("both", "value"),
                                                                 ("both", "set")]
        assert body["next"] is None
    assert client.store_keys("both") == ["both"]
    everything = call(cluster, "GET", "/store?prefix=walk&limit=100")[1]["keys"]
    assert len(everything) == 9
    for limit in (1, 2, 3):
        seen: list[Any] = []
        after = ""
        while True:
            status, body = call(cluster, "GET", f"/store?prefix=walk&limit={limit}{after}")
            assert status == 200 and len(body["keys"]) <= limit + 1, body
            seen += body["keys"]
            if body["next"] is None:
                break
            after = f"&after={body['next']}"
        assert seen == everything, limit
    assert client.store_delete("both") is True
    assert client.store_get("both") is None and client.store_smembers("both") == set()
    client.store_sadd("both", "fresh")
    assert client.store_smembers("both") == {"fresh"}
