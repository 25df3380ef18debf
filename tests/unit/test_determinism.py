"""titan.trace.determinism: static, dynamic and replay findings, the score and its bands."""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from datetime import UTC, datetime

import pytest

from titan.trace.determinism import Finding, analyze, band, dynamic, static
from titan.trace.determinism.findings import ADVICE
from titan.trace.determinism.scanner import WHY


def found(source: str, path: str = "job.py") -> list[tuple[str, str, int | None]]:
    """(kind, severity, line) of each static finding, in line order."""
    findings = static.scan(path, textwrap.dedent(source))
    return sorted(((f.kind, f.severity, f.line) for f in findings), key=lambda t: (t[2], t[0]))


def kinds(source: str) -> set[str]:
    return {kind for kind, _, _ in found(source)}


# -- static: each pattern, on its exact line -----------------------------------------------

PATTERNS = '''\
import datetime
import os
import random
import socket
import time
import uuid

import requests

started = datetime.datetime.now()
day = datetime.date.today()
t0 = time.time()
elapsed = time.monotonic() - time.perf_counter()
rid = uuid.uuid4()
pick = random.choice(["a", "b"])
pid = os.getpid()
home = os.environ["HOME"]
model = os.getenv("MODEL")
tags = {"x", "y"}
for tag in tags:
    print(tag)
bucket = hash("name") % 8
if elapsed == 0.5:
    pass
page = requests.get("https://example.com")
sock = socket.create_connection(("example.com", 80))
with open("notes.txt") as fh:
    notes = fh.read()
'''


def test_each_pattern_is_found_on_its_line() -> None:
    assert found(PATTERNS) == [
        ("wall_clock", "high", 10),
        ("wall_clock", "high", 11),
        ("wall_clock", "medium", 12),
        ("uuid", "high", 14),
        ("unseeded_random", "high", 15),
        ("pid", "medium", 16),
        ("env_read", "low", 17),
        ("env_read", "low", 18),
        ("set_iteration", "medium", 20),
        ("str_hash", "medium", 22),
        ("float_equality", "low", 23),
        ("network_io", "critical", 25),
        ("network_io", "critical", 26),
        ("file_io", "low", 27),
    ]


def test_a_finding_carries_its_code_advice_and_snippets() -> None:
    [f] = static.scan("agent.py", "import uuid\n\n\nrun_id = str(uuid.uuid4())  # fresh\n")
    assert (f.file, f.line, f.code) == ("agent.py", 4, "run_id = str(uuid.uuid4())  # fresh")
    assert "`uuid.uuid4()`" in f.description
    assert "titan.trace.uuid()" in f.recommendation and "titan.trace.uuid()" in f.after
    assert f.before and f.source == "static" and f.title == "Random UUID"
    assert f.to_dict()["line"] == 4 and json.dumps(f.to_dict())


@pytest.mark.parametrize("source", [
    "from datetime import datetime as dt\nx = 1\nwhen = dt.now()\n",
    "from datetime import datetime\nx = 1\nwhen = datetime.utcnow()\n",
    "import datetime as d\nx = 1\nwhen = d.datetime.today()\n",
    "from datetime import date\nx = 1\nwhen = date.today()\n",
])
def test_clock_reads_through_import_aliases(source: str) -> None:
    assert found(source) == [("wall_clock", "high", 3)]


@pytest.mark.parametrize(("source", "kind"), [
    ("from uuid import uuid4\nx = uuid4()\n", "uuid"),
    ("import uuid as u\nx = u.uuid1()\n", "uuid"),
    ("import secrets\nx = secrets.token_hex(8)\n", "uuid"),
    ("from time import time\nx = time()\n", "wall_clock"),
    ("import numpy as np\nx = np.random.rand(3)\n", "numpy_random"),
    ("from numpy import random as npr\nx = npr.choice([1, 2])\n", "numpy_random"),
    ("import numpy as np\nrng = np.random.default_rng()\n", "numpy_random"),
    ("from random import shuffle\nshuffle([1, 2])\n", "unseeded_random"),
    ("import random\nrng = random.Random()\n", "unseeded_random"),
    ("import httpx\nwith httpx.Client() as c:\n    pass\n", "network_io"),
    ("from urllib.request import urlopen\nurlopen('https://example.com')\n", "network_io"),
    ("import aiohttp\ns = aiohttp.ClientSession()\n", "network_io"),
    ("import sqlite3\ndb = sqlite3.connect('shop.db')\n", "database_io"),
    ("import psycopg\nconn = psycopg.connect('dbname=shop')\n", "database_io"),
    ("from redis import Redis\ncache = Redis()\n", "database_io"),
    ("from sqlalchemy import create_engine\nengine = create_engine('sqlite://')\n",
     "database_io"),
    ("from pathlib import Path\ntext = Path('a.txt').read_text()\n", "file_io"),
    ("import glob\nfiles = glob.glob('*.py')\n", "file_io"),
    ("from os import environ\nkey = environ.get('KEY')\n", "env_read"),
])
def test_import_variants(source: str, kind: str) -> None:
    assert kinds(source) == {kind}


@pytest.mark.parametrize("source", [
    "import random\nrandom.seed(7)\nx = random.random()\ny = random.choice([1, 2])\n",
    "import random\nrng = random.Random(7)\nx = rng.random()\n",
    "import numpy as np\nnp.random.seed(0)\nx = np.random.rand(3)\n",
    "import numpy as np\nrng = np.random.default_rng(42)\nx = rng.integers(0, 9)\n",
    "import time\nstart = time.perf_counter()\nlap = time.monotonic() - start\n",
    "import uuid\nkey = uuid.uuid5(uuid.NAMESPACE_URL, 'https://example.com')\n",
    "x = hash(42)\n",
    "if 1 == 2:\n    pass\n",
])
def test_deterministic_code_is_not_flagged(source: str) -> None:
    assert found(source) == []


def test_titan_recorded_values_are_the_fix_not_a_finding() -> None:
    source = '''\
        import titan
        from titan import trace
        from titan.trace import now, random, uuid

        a = titan.trace.now()
        b = titan.trace.uuid()
        c = titan.trace.random()
        d = trace.now() + now() + random()
        e = uuid()
        '''
    assert found(source) == []


# -- static: iteration over sets -----------------------------------------------------------

def test_set_iteration_in_all_its_forms() -> None:
    source = '''\
        def f(words: list[str], known: set[str]) -> None:
            seen = set(words)
            ids = [w.upper() for w in seen]
            line = ",".join(seen)
            first = list(known)
            index = dict.fromkeys(seen | known)
            table = {w: len(w) for w in frozenset(words)}
            for w in {"a", "b"}:
                print(w)
            spread = [*seen]
            any_one = seen.pop()
        '''
    assert [line for kind, _, line in found(source) if kind == "set_iteration"] == [
        3, 4, 5, 6, 7, 8, 10, 11]


def test_sorted_and_order_free_consumers_suppress_set_iteration() -> None:
    source = '''\
        def f(words: list[str]) -> None:
            seen = set(words)
            for w in sorted(seen):
                print(w)
            line = ",".join(sorted(seen))
            ordered = sorted([w.upper() for w in seen])
            size = len(list(seen)) + sum(len(w) for w in seen)
            union = {*seen, "x"}
            upper = {w.upper() for w in seen}
            small = [n for n in {3, 1, 2}]
            if "a" in seen:
                pass
        '''
    assert found(source) == []


def test_a_name_is_a_set_only_while_it_holds_one() -> None:
    source = '''\
        items = {"b", "a"}
        items = sorted(items)
        for i in items:
            print(i)

        class Tracker:
            def __init__(self) -> None:
                self.seen = set()

            def report(self) -> list[str]:
                return list(self.seen)
        '''
    assert found(source) == [("set_iteration", "medium", 11)]


def test_module_level_set_iterated_inside_a_function() -> None:
    source = '''\
        NAMES = frozenset(["a", "b"])


        def show() -> str:
            return " ".join(NAMES)
        '''
    assert found(source) == [("set_iteration", "medium", 5)]


# -- static: what Titan records is no finding ----------------------------------------------

def test_urlopen_inside_a_titan_tool_is_recorded_not_a_finding() -> None:
    """Issue 20: it was a medium "Unrecorded network call" whose description said it was
    recorded by @titan.tool and whose advice was to wrap it in @titan.tool."""
    source = """\
        import urllib.request

        import titan


        @titan.tool
        def fetch(url: str) -> bytes:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.read()


        def fetch_raw(url: str) -> bytes:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.read()
        """
    [f] = static.scan("tools.py", textwrap.dedent(source))
    assert (f.kind, f.severity, f.line, f.title) == (
        "network_io", "critical", 13, "Unrecorded network call")
    assert f.description == ("`urllib.request.urlopen(url, timeout=10)` calls the network: "
                             "a replay that runs it again may get another answer.")
    assert "@titan.tool" in f.recommendation and f.after.startswith("@titan.tool\n")
    assert f.docs == "/docs/determinism#network-io"


def test_nothing_a_tool_does_is_a_finding_whatever_its_spelling() -> None:
    source = """\
        import datetime
        import os
        import random
        import requests
        import titan
        from titan import tool


        @tool(name="stamp")
        def stamp() -> str:
            return datetime.datetime.now().isoformat() + os.environ["TZ"]


        class Search:
            @titan.trace.tool(simulated=True)
            async def search(self, q: str) -> list[str]:
                for tag in set(q.split()):
                    random.shuffle([tag])
                return requests.get(q).json()
        """
    assert found(source) == []


def test_a_pure_tool_runs_again_under_verify_so_its_findings_stay() -> None:
    source = """\
        import time
        import titan


        @titan.tool(pure=True)
        def score(text: str) -> float:
            return len(text) / time.time()
        """
    [f] = static.scan("tools.py", textwrap.dedent(source))
    assert (f.kind, f.severity, f.line) == ("wall_clock", "medium", 7)
    assert "pure=True" in f.description and "--verify" in f.description


@pytest.mark.parametrize("decorator", ["@titan.tool", "@titan.tool()", "@titan.tool(pure=True)",
                                       "@titan.tool(name='fetch')", "@titan.tool(pure=False)"])
def test_a_network_call_in_a_pure_tool_is_recorded_and_says_verify(decorator: str) -> None:
    """`@titan.tool(pure=True)` around requests.get was a CRITICAL "Unrecorded network call"
    (score 75) advising to wrap it in a @titan.tool: it is wrapped and recorded, and only
    --verify runs it again (a QA pass)."""
    source = f"import requests\nimport titan\n{decorator}\ndef fetch(u):\n" \
             "    return requests.get(u).text\n"
    report = analyze({"a.py": source}, [])
    if "pure=True" not in decorator:
        assert (report["score"], report["findings"]) == (100, [])
        return
    [f] = report["findings"]
    assert (f["kind"], f["severity"], f["line"]) == ("pure_io", "medium", 5)
    assert f["title"] == "Network call in a pure tool, re-run by --verify"
    assert "Unrecorded" not in f["title"] and "--verify" in f["description"]
    assert f["recommendation"].startswith("A --verify replay runs a pure=True tool")
    assert "Drop pure=True" in f["recommendation"] and f["docs"] == "/docs/determinism#pure-io"
    assert report["score"] == 95
    # Its advice fixes it: without pure=True the tool is served by every replay.
    advice = ADVICE["pure_io"]
    assert {x.kind for x in static.scan("b.py", "import requests\nimport titan\n"
                                        + advice.before)} == {"pure_io"}
    assert static.scan("b.py", "import requests\nimport titan\n" + advice.after) == []


def test_a_pure_tools_database_and_file_reads_are_pure_io_too() -> None:
    source = """\
        import sqlite3
        import titan

        @titan.tool(pure=True)
        def stock(path):
            notes = open(path).read()
            return sqlite3.connect("shop.db").execute("select 1").fetchall(), notes
        """
    found_ = {(f.line, f.severity, f.title) for f in static.scan("t.py", textwrap.dedent(source))}
    assert found_ == {(6, "low", "File I/O in a pure tool, re-run by --verify"),
                      (7, "medium", "Database query in a pure tool, re-run by --verify")}


def test_an_action_block_is_served_only_under_if_not_replayed() -> None:
    """A `with` block cannot be skipped: on replay it runs again with a.outputs already set to
    the recorded value. Only what `if not a.replayed:` guards is left out."""
    source = """\
        import random
        import titan
        from titan import trace

        with titan.trace.action("pick", inputs={"r": random.random()}) as a:
            if not a.replayed:
                a.outputs = random.choice(["a", "b"])
        with trace.action("again") as b:
            b.outputs = random.random()
        with trace.action("other") as c:
            if c.replayed:
                pass
            else:
                c.outputs = random.random()
        with trace.action("verified", pure=True) as d:
            if not d.replayed:
                d.outputs = random.random()
        after = random.random()
        """
    findings = {f.line: f for f in static.scan("job.py", textwrap.dedent(source))}
    assert sorted(findings) == [5, 9, 17, 18]  # the inputs are compared on replay, not served
    assert "if not a.replayed" in findings[9].description
    assert "--verify" in findings[17].description
    assert findings[18].description.endswith("other numbers on every run.")


def test_the_recorded_helpers_are_the_fix_and_uuid4_is_not() -> None:
    fixed = "import titan\n\nrun_id = f\"RESEARCH_{titan.trace.uuid()[:6]}\"\n"
    assert found(fixed) == []
    [f] = static.scan("agent.py", "import uuid\n\nrun_id = f\"RESEARCH_{uuid.uuid4().hex[:6]}\"\n")
    assert (f.kind, f.severity, f.line) == ("uuid", "high", 3)
    assert "titan.trace.uuid()" in f.recommendation


# -- static: TitanStore keys and artifacts ---------------------------------------------------

ORCHESTRATOR = """\
    import titan
    from titan_sdk import TitanClient


    def research(client: TitanClient, query: str) -> str:
        run_id = f"RESEARCH_{titan.trace.uuid()[:6]}"
        key = f"research:{run_id}"
        client.store_put(f"{key}:query", query)
        plan = client.store_get(f"{key}:plan")
        shared = client.store_get("shared:style-guide")
        return client.get_artifact(f"{key}:report", save_path="report.md") + plan + shared
    """
PLANNER = """\
    from pathlib import Path
    from titan_sdk import TitanClient


    def main(run_id: str) -> None:
        client = TitanClient()
        key = f"research:{run_id}"
        query = client.store_get(f"{key}:query")
        path = Path(run_id) / "report.md"
        path.write_text(query.upper())
        client.publish_artifact(f"{key}:report", path)
        client.store_put(key + ":plan", "[]")
    """
READER = """\
    import tempfile
    from pathlib import Path
    from titan_sdk import TitanClient


    def load(client: TitanClient, run_key: str) -> list[str]:
        keys = sorted(client.store_smembers(f"{run_key}:results"))
        with tempfile.TemporaryDirectory() as tmp:
            texts = [Path(client.get_artifact(k, save_path=Path(tmp) / "a.txt")).read_text()
                     for k in keys]
            saved = client.get_artifact("datasets:faq")
            faq = Path(saved).read_text()
            client.get_artifact(f"{run_key}:notes", save_path="notes.txt")
            with open("notes.txt") as fh:
                texts.append(fh.read())
        return texts + [faq, open("other.txt").read()]
    """


def test_keys_and_artifacts_the_run_writes_are_replay_safe_to_read() -> None:
    files = {name: textwrap.dedent(src) for name, src in (
        ("agent.py", ORCHESTRATOR), ("planner.py", PLANNER), ("reader.py", READER))}
    report = analyze(files, [])
    got = [(f["kind"], f["file"], f["line"]) for f in report["findings"]]
    # Read back: the plan and report keys the planner writes; the artifact files downloaded
    # and read (by return value, by a name given it, by save_path); the report file the
    # planner writes and publishes; keys of unknown shape (`k`, the results set's members).
    assert sorted(got) == [
        ("file_io", "reader.py", 16),  # other.txt: no artifact
        ("store_read", "agent.py", 10),  # shared:style-guide: no file of the run writes it
        ("store_read", "reader.py", 7),  # *:results: nobody adds to that set
        ("store_read", "reader.py", 11),  # datasets:faq: no file publishes it
        ("store_read", "reader.py", 13),  # *:notes: likewise
    ]
    shared = next(f for f in report["findings"] if f["line"] == 10)
    assert shared["severity"] == "low" and shared["title"] == "Unrecorded store read"
    assert "`shared:style-guide`, a key that no file of the run writes" in shared["description"]
    assert shared["docs"] == "/docs/determinism#store-read"


def test_one_file_alone_writes_no_key_for_another() -> None:
    planner = {f.kind for f in static.scan("planner.py", textwrap.dedent(PLANNER))}
    assert planner == {"store_read"}  # research:*:query is the orchestrator's
    assert not [f for f in static.scan_run({"a.py": textwrap.dedent(ORCHESTRATOR),
                                            "p.py": textwrap.dedent(PLANNER)})
                if "research" in f.description]


def test_a_store_read_inside_a_tool_is_recorded() -> None:
    source = """\
        import titan

        @titan.tool
        def load_config(client) -> str:
            return client.store_get("shared:config")
        """
    assert found(source) == []


# -- static: each piece of advice fixes what it is given for ---------------------------------

SNIPPET_IMPORTS = {
    "database_io": "import sqlite3\nimport titan\n",
    "numpy_random": "import numpy as np\n",
    "wall_clock": "from datetime import UTC, datetime\nimport titan\n",
}


@pytest.mark.parametrize("kind", sorted(WHY))
def test_each_kinds_after_snippet_fixes_its_before(kind: str) -> None:
    """No finding whose advice would not fix it: the recommendation's own `after` is clean."""
    advice = ADVICE[kind]

    def scan(snippet: str) -> set[str]:
        body = snippet if not snippet.rstrip().endswith(":") else snippet + "\n    pass"
        return {f.kind for f in static.scan("s.py", SNIPPET_IMPORTS.get(kind, "") + body)}

    assert kind in scan(advice.before)
    assert scan(advice.after) == set()


def test_an_orchestrators_environment_read_is_found_and_its_advice_fixes_it() -> None:
    before = """\
        import argparse
        import os

        p = argparse.ArgumentParser()
        p.add_argument("--model", default=os.environ.get("TITAN_LLM_MODEL") or None)
        """
    [f] = static.scan("research_agent.py", textwrap.dedent(before))
    assert (f.kind, f.severity, f.line) == ("env_read", "low", 5)
    assert "command line is recorded" in f.recommendation
    assert "not even as an argument's default" in f.recommendation
    after = textwrap.dedent(before).replace('os.environ.get("TITAN_LLM_MODEL") or None', "None")
    assert static.scan("research_agent.py", after) == []


def test_an_unparsable_file_is_one_low_finding() -> None:
    findings = static.scan("broken.py", "x = 1\ndef f(:\n    pass\n")
    assert [(f.kind, f.severity, f.line, f.code) for f in findings] == [
        ("unparsable", "low", 2, "def f(:")]
    report = analyze({"broken.py": "def f(:\n", "ok.py": "x = 1\n"}, [])
    assert report["score"] == 99 and report["analyzed"]["files"] == ["broken.py", "ok.py"]
    deep = "x = " + " + ".join(["1"] * 20_000) + "\n"  # parses, but deeper than recursion
    assert [f.kind for f in static.scan("deep.py", deep)] == ["unparsable"]


# -- dynamic: values in recorded outputs ---------------------------------------------------

def row(seq: int, name: str, outputs: object, channel: str = "custom",
        inputs: object = None, raw: bool = False) -> dict[str, object]:
    """An action row as the store gives it: inputs and outputs as JSON text (``raw``: the
    outputs text as given, such as a truncated preview). ``custom``: a ``trace.action``
    block's, which the agent's code computes."""
    return {"seq": seq, "name": name, "actor": "main", "channel": channel,
            "outcome": "success", "inputs": None if inputs is None else json.dumps(inputs),
            "outputs": outputs if raw else json.dumps(outputs)}


NOW = datetime(2025, 6, 1, tzinfo=UTC).timestamp()


def dynamic_findings(rows: list[dict[str, object]]) -> dict[tuple[str, str], Finding]:
    findings, count = dynamic.scan(rows, now=NOW)
    assert count == len(rows)
    return {(f.kind, f.action or ""): f for f in findings}


def test_timestamp_uuid_and_pid_in_outputs() -> None:
    ident = str(uuid.UUID("12345678-1234-4234-9234-123456789abc"))
    rows = [
        row(1, "plan", {"text": "no surprises here", "tokens": 12}),
        row(2, "generate_report", {"report": "ok", "generated": "2024-12-28T14:30:00Z"}),
        row(3, "generate_report", {"report": "ok", "generated": "2024-12-29T09:00:00Z"}),
        row(4, "create_ticket", {"ticket": {"id": ident}}),
        row(5, "worker_info", {"pid": 4242, "created_at": 1735396200}),
        row(6, "make_token", {"token": "9f86d081884c7d65ab3e"}),
    ]
    found_ = dynamic_findings(rows)
    stamp = found_[("timestamp_in_output", "generate_report")]
    assert stamp.severity == "high" and stamp.seq == 2 and stamp.source == "dynamic"
    assert stamp.description == (
        'Output contains current timestamp ("2024-12-28T14:30:00Z") which will differ on '
        "replay. Seen in 2 actions, first at #2.")
    assert stamp.recommendation == "Pass timestamp as input parameter instead."
    assert found_[("uuid_in_output", "create_ticket")].severity == "high"
    assert ident in found_[("uuid_in_output", "create_ticket")].description
    assert found_[("pid_in_output", "worker_info")].severity == "medium"
    assert found_[("timestamp_in_output", "worker_info")].severity == "medium"
    assert found_[("random_id_in_output", "make_token")].severity == "medium"
    assert set(found_) == {("timestamp_in_output", "generate_report"),
                           ("uuid_in_output", "create_ticket"), ("pid_in_output", "worker_info"),
                           ("timestamp_in_output", "worker_info"),
                           ("random_id_in_output", "make_token")}


def test_recorded_clock_and_random_values_are_not_findings() -> None:
    stamp = "2025-05-31T12:00:00+00:00"
    at = datetime.fromisoformat(stamp).timestamp()
    ident = "12345678-1234-4234-9234-123456789abc"
    rows = [
        row(1, "now", at, channel="clock"),
        row(2, "uuid", ident, channel="random"),
        row(3, "random", 0.123, channel="random"),
        # Values that came from Titan's recorded ones, or from the inputs, replay the same.
        row(4, "report", {"at": stamp, "id": ident}),
        row(5, "echo", {"when": "2025-01-01T08:00:00Z"}, inputs={"when": "2025-01-01T08:00:00Z"}),
    ]
    assert dynamic_findings(rows) == {}


def test_what_is_not_a_fresh_value() -> None:
    rows = [
        row(1, "history", {"text": "Founded 1999-05-04T10:00:00Z; moon landing 1969"}),
        row(2, "named", {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, "https://example.com"))}),
        row(3, "digest", {"sha256": "ab" * 32, "word": "internationalization"}),
        row(4, "prose", {"text": "gpt4o and h100 cards ran release2024notes in 10x time"}),
        row(5, "counts", {"pid_count": 3, "time": 12, "tokens": 1735396200}),
    ]
    assert dynamic_findings(rows) == {}


def test_a_clock_reading_is_found_by_its_value_whatever_its_key() -> None:
    at = NOW - 3600.0  # when the actions ran

    def ran(r: dict[str, object]) -> dict[str, object]:
        return {**r, "started_at": at}

    rows = [
        ran(row(1, "tick", {"t": at + 0.25})),  # time.time() under a key that says nothing
        ran(row(2, "batch", {"values": [1.5, at + 2.5]})),  # a list item
        ran(row(3, "millis", {"v": int((at + 1) * 1000)})),  # milliseconds
        ran(row(4, "count", {"n": int(at)})),  # whole seconds under a neutral key: not sure
        ran(row(5, "old", {"t": at - 5 * 86400 + 0.5})),  # days before the action: data
        ran(row(6, "echo", {"t": at + 0.75}, inputs={"given": at + 0.75})),  # passed in
    ]
    found_ = dynamic_findings(rows)
    assert set(found_) == {("timestamp_in_output", "tick"), ("timestamp_in_output", "batch"),
                           ("timestamp_in_output", "millis")}
    assert found_[("timestamp_in_output", "tick")].severity == "medium"
    assert f'"t": {at + 0.25}' in found_[("timestamp_in_output", "tick")].description
    # Without the action's time there is nothing to compare with: only named keys count.
    assert dynamic_findings([row(1, "tick", {"t": at + 0.25})]) == {}


def test_truncated_outputs_are_scanned_as_text() -> None:
    rows = [row(7, "dump", '{"at": "2025-05-30 10:11:12", "pid": 99, "rest": "abc', raw=True)]
    found_ = dynamic_findings(rows)
    assert set(found_) == {("timestamp_in_output", "dump"), ("pid_in_output", "dump")}


def test_a_tools_answer_holding_the_current_time_an_id_or_a_pid_is_a_finding() -> None:
    """Seed 004 scans tool outputs for timestamps and UUIDs; Titan skipped every tool's
    output, so a run recorded over the HTTP API whose tool answered the time it ran, a uuid4
    and a pid reported nothing (a QA pass). The finding says which replays it differs in."""
    at = time.time()
    answer = {"created_at": datetime.fromtimestamp(at + 0.4, UTC).isoformat(),
              "id": str(uuid.uuid4()), "pid": 4242}
    call = {**row(1, "lookup", answer, channel="tool", inputs={"q": "x"}),
            "started_at": int(at), "duration_ns": 800_000_000}
    report = analyze({}, [call])
    found_ = {f["kind"]: f for f in report["findings"]}
    assert set(found_) == {"timestamp_in_output", "uuid_in_output", "pid_in_output"}
    stamp = found_["timestamp_in_output"]
    assert (stamp["title"], stamp["severity"], stamp["action"]) == (
        "Timestamp in output", "high", "lookup")
    assert stamp["recommendation"] == "Pass timestamp as input parameter instead."
    assert stamp["description"].startswith(
        f'Output contains current timestamp ("{answer["created_at"]}") which will differ on '
        "replay where the tool runs again: with --verify if it is pure=True, or in a fork")
    assert "a strict replay serves the recorded output" in stamp["description"]
    assert found_["uuid_in_output"]["severity"] == "high"
    assert found_["pid_in_output"]["severity"] == "medium"
    assert report["score"] == 100 - 12 - 12 - 5
    # A pure tool of the run's code: --verify runs it again.
    pure = "import titan\n\n@titan.tool(name='lookup', pure=True)\ndef find(q):\n    ...\n"
    verified = analyze({"tools.py": pure}, [call])["findings"]
    assert {f["kind"] for f in verified} == set(found_)
    assert all("will differ on replay with --verify, which runs the pure tool again" in
               f["description"] for f in verified)


def test_what_a_replay_serves_or_the_world_made_is_no_finding() -> None:
    """A ticket API's server-made id and creation time were reported HIGH, "will differ on
    replay", against a replay that served them and matched 100 % (a QA pass): a tool the
    code shows not pure is served by every replay, as the static analysis reasons too."""
    at = time.time()
    answer = {"ticket": str(uuid.uuid4()), "created_at": datetime.fromtimestamp(at, UTC)
              .isoformat(), "token": "aB3dE5fG7hJ9kL1mN3pQ"}
    rows = [{**row(i, "create_ticket", answer, channel=channel), "started_at": at}
            for i, channel in enumerate(("tool", "llm", "network"))]
    code = {"agent.py": "import titan\n\n@titan.tool\ndef create_ticket(title):\n    ...\n"}
    assert analyze(code, rows)["findings"] == []
    # A model's reply is never read: a date in its text is not the run's clock.
    assert analyze({}, rows[1:])["findings"] == []
    # A tool's data: a time long before the call (an article's date), an API's token.
    data = {"published": datetime.fromtimestamp(at - 3 * 86400, UTC).isoformat(),
            "updated_at": int(at) - 7200, "etag": "aB3dE5fG7hJ9kL1mN3pQ"}
    assert analyze({}, [{**row(1, "news", data, channel="tool"), "started_at": at}])[
        "findings"] == []
    made = {**row(3, "summary", {"at": datetime.now(UTC).isoformat()}), "started_at": at}
    assert {f["kind"] for f in analyze(code, [*rows, made])["findings"]} == {
        "timestamp_in_output"}


def test_thirty_thousand_actions() -> None:
    text = "Retrieval augmented generation pairs a retriever with a generator. " * 10
    rows = [row(i, f"step{i % 5}", {"text": text, "tokens": i, "score": 0.5},
                channel="llm" if i % 2 else "tool") for i in range(30_000)]
    rows[12_345] = row(12_345, "stamp", {"at": "2025-05-30T10:11:12Z"})
    started = time.perf_counter()
    findings, count = dynamic.scan(rows, now=NOW)
    assert count == 30_000 and [(f.kind, f.seq) for f in findings] == [
        ("timestamp_in_output", 12_345)]
    assert time.perf_counter() - started < 30  # a sanity bound, not a benchmark


# -- replay evidence -----------------------------------------------------------------------

def test_replay_divergences_become_findings() -> None:
    divergences = [
        {"kind": "output_mismatch", "actor": "main", "channel": "tool", "name": "search",
         "ordinal": 0, "message": "outputs differ", "replay_run_id": "r1"},
        {"kind": "output_mismatch", "actor": "main", "channel": "tool", "name": "search",
         "ordinal": 0, "message": "outputs differ", "replay_run_id": "r2"},
        {"kind": "leak", "actor": "main", "channel": "network", "name": "api.example.com",
         "ordinal": 0, "message": "GET https://api.example.com", "replay_run_id": "r1"},
        {"kind": "missing", "actor": "main/sub", "channel": "llm", "name": "call_llm",
         "ordinal": 2, "message": "", "replay_run_id": "r2"},
    ]
    report = analyze({}, [], divergences, replays=2)
    by_kind = {f["kind"]: f for f in report["findings"]}
    mismatch = by_kind["output_mismatch"]
    assert mismatch["severity"] == "critical" and mismatch["source"] == "replay"
    assert "Same inputs, different outputs" in mismatch["description"]
    assert "Found 2 times" in mismatch["description"] and mismatch["action"] == "search"
    assert (by_kind["network_io"]["severity"], by_kind["network_io"]["source"]) == (
        "critical", "replay")
    assert by_kind["divergence"]["severity"] == "high"
    assert report["counts"] == {"critical": 2, "high": 1, "medium": 0, "low": 0}
    assert report["analyzed"]["replays"] == 2
    assert report["score"] == 100 - 25 - 25 - 12


# -- score, bands, the report --------------------------------------------------------------

@pytest.mark.parametrize(("score", "label", "color", "low"), [
    (100, "Highly deterministic", "green", 90),
    (90, "Highly deterministic", "green", 90),
    (89, "Moderately deterministic", "yellow", 70),
    (70, "Moderately deterministic", "yellow", 70),
    (69, "Low determinism", "orange", 50),
    (50, "Low determinism", "orange", 50),
    (49, "Highly non-deterministic", "red", 0),
    (0, "Highly non-deterministic", "red", 0),
])
def test_band_boundaries(score: int, label: str, color: str, low: int) -> None:
    assert band(score) == {"label": label, "color": color, "min": low}


def test_a_clock_and_a_uuid_cost_a_band() -> None:
    source = '''\
        import uuid
        from datetime import datetime

        def main() -> dict[str, str]:
            return {"id": str(uuid.uuid4()), "at": datetime.now().isoformat()}
        '''
    report = analyze({"job.py": textwrap.dedent(source)}, [])
    assert report["score"] < 90 and report["score"] == 76
    assert report["band"]["label"] == "Moderately deterministic"
    assert [(f["kind"], f["line"]) for f in report["findings"]] == [
        ("uuid", 5), ("wall_clock", 5)]
    assert {r["kind"] for r in report["recommendations"]} == {"wall_clock", "uuid"}
    assert all(r["before"] and r["after"] and r["advice"] for r in report["recommendations"])
    json.dumps(report)


def test_the_titan_version_scores_100() -> None:
    source = '''\
        import titan

        def main(tags: list[str]) -> dict[str, object]:
            return {"id": titan.trace.uuid(), "at": titan.trace.now(),
                    "tags": sorted(set(tags)), "roll": titan.trace.random()}
        '''
    report = analyze({"job.py": textwrap.dedent(source)}, iter([]))
    assert report["score"] == 100 and report["findings"] == []
    assert report["band"]["color"] == "green" and report["recommendations"] == []
    assert report["counts"] == {"critical": 0, "high": 0, "medium": 0, "low": 0}


def test_repeats_of_a_kind_in_a_file_have_diminishing_cost() -> None:
    reads = "\n".join(f"v{i} = os.environ.get('V{i}')" for i in range(40))
    report = analyze({"cfg.py": "import os\n" + reads + "\n"}, [])
    assert report["counts"]["low"] == 40 and report["score"] == 97  # 1 + 0.5 ... capped at 2.5
    clocks = "\n".join(f"t{i} = datetime.now()" for i in range(3))
    report = analyze({"a.py": "from datetime import datetime\n" + clocks,
                      "b.py": "from datetime import datetime\nt = datetime.now()\n"}, [])
    assert report["score"] == 100 - (12 + 6 + 6) - 12


def test_findings_are_sorted_worst_first_then_by_file_and_line() -> None:
    files = {"b.py": "import os\nx = os.getenv('A')\nimport requests\nrequests.get('u')\n",
             "a.py": "import os\n\nx = os.getenv('A')\n"}
    rows = [row(3, "stamp", {"at": datetime.now(UTC).isoformat()})]
    report = analyze(files, rows)
    order = [(f["severity"], f["file"], f["line"]) for f in report["findings"]]
    assert order == [("critical", "b.py", 4), ("high", None, None), ("low", "a.py", 3),
                     ("low", "b.py", 2)]
    assert report["analyzed"] == {"files": ["b.py", "a.py"], "actions": 1, "replays": 0}
    assert [r["kind"] for r in report["recommendations"]] == [
        "network_io", "timestamp_in_output", "env_read"]


def test_a_run_with_nothing_to_analyse_is_not_scored() -> None:
    # No code, no recorded action, no replay: a perfect score would claim what nobody checked.
    empty = analyze({}, [])
    assert empty["score"] is None and empty["band"]["label"].startswith("Not analysed")
    # Recorded actions alone are evidence (an imported run's outputs): scored from them.
    outputs = analyze({}, [{"seq": 1, "name": "call_llm", "channel": "llm",
                            "inputs": "{}", "outputs": '{"text": "hi"}'}])
    assert outputs["score"] == 100 and outputs["analyzed"]["actions"] == 1


def _scan_run(files: dict[str, str]) -> list[tuple[str, str | None, int | None]]:
    found = static.scan_run({p: textwrap.dedent(s) for p, s in files.items()})
    return sorted((f.kind, f.file, f.line) for f in found)


def test_a_helper_only_a_tool_calls_does_not_run_on_replay() -> None:
    # QA r12: docs say a tool body's clock read is no finding; one moved into a helper the
    # tool calls was still HIGH, and the score dropped while the replay matched 100 %.
    same_file = """\
        import datetime, uuid
        import titan

        def stamp():
            return datetime.datetime.now().isoformat()

        def new_id():
            return ids()

        def ids():  # two calls down, and recursive
            return str(uuid.uuid4()) if True else ids()

        @titan.tool
        def generate_report(topic: str) -> dict:
            return {"topic": topic, "at": stamp(), "id": new_id()}

        with titan.trace.run("agent") as run:
            generate_report("x")
        """
    assert _scan_run({"agent.py": same_file}) == []
    helpers = """\
        import datetime, uuid

        def stamp():
            return datetime.datetime.now().isoformat()

        def new_id():
            return str(uuid.uuid4())
        """
    for importing in ("from helpers import stamp, new_id\n",
                      "from .helpers import stamp, new_id\n",
                      "import helpers\nstamp, new_id = helpers.stamp, helpers.new_id\n"):
        tool = importing + """
import titan

@titan.tool
def generate_report(topic):
    return {"at": stamp(), "id": new_id()}
"""
        if "stamp, new_id =" in tool:  # referenced at module level: they run there
            assert len(_scan_run({"agent.py": tool, "helpers.py": helpers})) == 2
            continue
        assert _scan_run({"agent.py": tool, "helpers.py": helpers}) == [], importing
    via_module = ("import helpers\nimport titan\n\n@titan.tool\ndef report():\n"
                  "    return helpers.stamp(), helpers.new_id()\n")
    assert _scan_run({"agent.py": via_module, "lib/helpers.py": helpers}) == []
    # Alone, nothing calls them: as far as anyone knows something else does.
    assert _scan_run({"helpers.py": helpers}) == [
        ("uuid", "helpers.py", 7), ("wall_clock", "helpers.py", 4)]


def test_a_helper_also_called_where_replays_run_it_keeps_its_findings() -> None:
    helpers = """\
        import datetime

        def stamp():
            return datetime.datetime.now().isoformat()

        def log_line(text):
            return f"{stamp()} {text}"
        """
    agent = """\
        import titan
        from helpers import stamp, log_line

        @titan.tool
        def report():
            return stamp()

        @titan.tool(pure=True)
        def checked():
            return log_line("x")  # a --verify replay runs a pure tool again

        with titan.trace.run("agent") as run:
            with titan.trace.action("step") as a:
                a.outputs = {"at": stamp()}  # an action block's body runs on replay
        """
    assert _scan_run({"agent.py": agent, "helpers.py": helpers}) == [
        ("wall_clock", "helpers.py", 4)]
    # Called at module level, passed as a callback, or a name two files define: it stays.
    for outside in ("print(stamp())", "sorted([1], key=stamp)"):
        code = ("import titan\nfrom helpers import stamp\n\n@titan.tool\ndef t():\n"
                f"    return stamp()\n\n{outside}\n")
        assert _scan_run({"agent.py": code, "helpers.py": helpers}) == [
            ("wall_clock", "helpers.py", 4)], outside
    two = ("import titan\nfrom helpers import stamp\n\n@titan.tool\ndef t():\n"
           "    return stamp()\n")
    assert _scan_run({"agent.py": two, "a/helpers.py": helpers, "b/helpers.py": helpers}) == [
        ("wall_clock", "a/helpers.py", 4), ("wall_clock", "b/helpers.py", 4)]
    # Guarded by `if not a.replayed:` is served too; the rest of the block is not.
    guarded = """\
        import titan
        from helpers import stamp

        with titan.trace.run("agent") as run:
            with titan.trace.action("step") as a:
                if not a.replayed:
                    a.outputs = stamp()
        """
    stamp_only = helpers.split("def log_line")[0]  # log_line, uncalled, would call it
    assert _scan_run({"agent.py": guarded, "helpers.py": stamp_only}) == []
