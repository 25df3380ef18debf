"""A finding, the severities, and the advice for each kind of finding.

The advice lives here, once per kind, so that static, dynamic and replay findings of the same
kind give the same recommendation and the report can list it once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

SEVERITIES = ("critical", "high", "medium", "low")
#: docs/determinism.md as the dashboard serves it: one section per kind, whose heading is the
#: kind in words ("Wall clock": #wall-clock), with the fix and a before/after snippet.
DOCS = "/docs/determinism"
# A lower rank sorts first: critical findings lead the report.
RANK = {s: i for i, s in enumerate(SEVERITIES)}


def docs_link(kind: str) -> str:
    """Where the docs explain ``kind`` and how to fix it."""
    return f"{DOCS}#{kind.replace('_', '-')}"


class Advice(NamedTuple):
    title: str
    advice: str
    before: str
    after: str


ADVICE: dict[str, Advice] = {
    "wall_clock": Advice(
        "Wall-clock time read",
        "Take the time from titan.trace.now() (recorded: a replay gets the same value), "
        "or pass the timestamp in as an input.",
        "started = datetime.now()",
        "started = datetime.fromtimestamp(titan.trace.now(), tz=UTC)  "
        "# recorded: a replay gets the same value"),
    "uuid": Advice(
        "Random UUID",
        "Draw ids with titan.trace.uuid() (recorded), or derive them from the inputs.",
        "request_id = str(uuid.uuid4())",
        "request_id = titan.trace.uuid()  # recorded: a replay gets the same id"),
    "unseeded_random": Advice(
        "Unseeded random",
        "Use titan.trace.random(), or a random.Random(seed) whose seed is passed in as an "
        "input.",
        "pick = random.choice(options)",
        "rng = random.Random(seed)  # seed passed in as an input\npick = rng.choice(options)"),
    "numpy_random": Advice(
        "Unseeded NumPy random",
        "Use a np.random.default_rng(seed) whose seed is passed in as an input.",
        "noise = np.random.randn(3)",
        "rng = np.random.default_rng(seed)  # seed passed in as an input\n"
        "noise = rng.standard_normal(3)"),
    "pid": Advice(
        "Process id read",
        "Keep process ids out of anything the agent computes or returns.",
        'record = {"pid": os.getpid(), "answer": answer}',
        'record = {"answer": answer}  # no process ids in results'),
    "env_read": Advice(
        "Environment variable read",
        "Take the value as an argument, not from the environment (not even as an argument's "
        "default): a script's command line is recorded with the run and given again to its "
        "replay, a tool's arguments are its recorded inputs.",
        'model = os.environ.get("MODEL", "small")',
        'parser.add_argument("--model", default="small")  # the command line is recorded'),
    "set_iteration": Advice(
        "Set iteration order",
        "Iterate sets in sorted order: a set of strings iterates in a different order in each "
        "process (PYTHONHASHSEED).",
        "for tag in set(tags):",
        "for tag in sorted(set(tags)):"),
    "str_hash": Advice(
        "Salted hash()",
        "hash() of a str or bytes changes with each process (PYTHONHASHSEED); use a "
        "content hash.",
        "bucket = hash(name) % 16",
        "bucket = int(hashlib.sha256(name.encode()).hexdigest(), 16) % 16"),
    "float_equality": Advice(
        "Float equality",
        "Compare floats with a tolerance: the last bits differ across platforms and "
        "summation orders.",
        "if score == 0.3:",
        "if math.isclose(score, 0.3):"),
    "network_io": Advice(
        "Unrecorded network call",
        "Wrap the call in a @titan.tool function so it is recorded and served on replay.",
        "def fetch(url):\n    return requests.get(url).text",
        "@titan.tool\ndef fetch(url):\n    return requests.get(url).text  "
        "# recorded: a replay serves the result"),
    "pure_io": Advice(
        "I/O in a pure tool, re-run by --verify",
        "A --verify replay runs a pure=True tool or action again and compares: the network, "
        "a database or a file may answer otherwise by then. Drop pure=True from one that "
        "reads the outside world (every replay then serves its recorded result), or keep it "
        "to have --verify check that the answer is stable.",
        "@titan.tool(pure=True)\ndef fetch(url):\n    return requests.get(url).text",
        "@titan.tool  # not pure: every replay serves the recorded page\ndef fetch(url):\n"
        "    return requests.get(url).text"),
    "database_io": Advice(
        "Unrecorded database query",
        "Open the connection and run the queries inside a @titan.tool function: each result "
        "is recorded, and a replay serves it without reading the database again.",
        'db = sqlite3.connect("shop.db")\nstock = db.execute("select qty from stock").fetchall()',
        "@titan.tool\ndef read_stock():\n    with sqlite3.connect(\"shop.db\") as db:\n"
        "        return db.execute(\"select qty from stock\").fetchall()  "
        "# recorded: a replay serves the rows"),
    "file_io": Advice(
        "File I/O",
        "Read inputs through a recorded tool, or pass their content in as an input. Files "
        "the run hands between its stages are better as artifacts: a file it publishes, or "
        "downloads with get_artifact and reads, is judged by its key.",
        'notes = open("notes.txt").read()',
        "@titan.tool\ndef read_notes(path):\n    return Path(path).read_text()  "
        "# recorded: a replay serves the content"),
    "store_read": Advice(
        "Unrecorded store read",
        "Read state that the run does not write itself through a recorded tool, or pass it "
        "in as an input; keys the run writes (its stages' hand-overs) are fine as they are.",
        'config = client.store_get("shared:config")',
        "@titan.tool\ndef load_config():\n    return client.store_get(\"shared:config\")  "
        "# recorded: a replay serves the value"),
    "timestamp_in_output": Advice(
        "Timestamp in output",
        "Pass timestamp as input parameter instead.",
        'return {"report": text, "generated_at": datetime.now().isoformat()}',
        'return {"report": text, "generated_at": generated_at}  # passed in as an input'),
    "uuid_in_output": Advice(
        "UUID in output",
        "Draw ids with titan.trace.uuid() (recorded), or derive them from the inputs "
        "(uuid.uuid5).",
        'return {"id": str(uuid.uuid4()), "text": text}',
        'return {"id": str(uuid.uuid5(NAMESPACE, key)), "text": text}  # same key, same id'),
    "random_id_in_output": Advice(
        "Random id in output",
        "Derive ids from the inputs, or draw them with titan.trace.uuid() so they are "
        "recorded.",
        'return {"id": secrets.token_hex(16)}',
        'return {"id": hashlib.sha256(key.encode()).hexdigest()[:32]}  # derived from inputs'),
    "pid_in_output": Advice(
        "Process id in output",
        "Keep process ids out of outputs: every run gets another one.",
        'return {"pid": os.getpid(), "answer": answer}',
        'return {"answer": answer}'),
    "output_mismatch": Advice(
        "Same inputs, different outputs",
        "Find what the action reads besides its inputs (clock, randomness, network, files) "
        "and record it: titan.trace.now()/uuid()/random() or a @titan.tool.",
        "def lookup(q):\n    return requests.get(API, params={'q': q}).json()",
        "@titan.tool\ndef lookup(q):\n    return requests.get(API, params={'q': q}).json()"),
    "divergence": Advice(
        "Replay diverged",
        "The replay took another path: make control flow depend only on inputs and "
        "recorded values.",
        "if random.random() < 0.5:\n    search(query)",
        "if titan.trace.random() < 0.5:  # recorded\n    search(query)"),
    "unparsable": Advice(
        "File does not parse",
        "Fix the syntax error so that the file can be analysed.",
        "", ""),
}


@dataclass
class Finding:
    """One reason a run may not replay the same: where it is, how bad, and how to fix it."""

    kind: str
    severity: str
    title: str
    description: str
    file: str | None = None
    line: int | None = None
    code: str | None = None
    action: str | None = None
    seq: int | None = None
    recommendation: str = ""
    before: str = ""
    after: str = ""
    source: str = "static"
    docs: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The finding as a JSON-able dict (every field, by name)."""
        return dataclasses.asdict(self)

    def sort_key(self) -> tuple[Any, ...]:
        # Findings without a file (dynamic, replay) follow those with one at equal severity.
        return (RANK[self.severity], self.file is None, self.file or "", self.line or 0,
                self.seq if self.seq is not None else -1, self.kind, self.action or "")


def make(kind: str, severity: str, description: str, *, title: str | None = None,
         **where: Any) -> Finding:
    """A finding of ``kind`` carrying that kind's advice."""
    advice = ADVICE[kind]
    return Finding(kind=kind, severity=severity, title=title or advice.title,
                   description=description, recommendation=advice.advice,
                   before=advice.before, after=advice.after, docs=docs_link(kind), **where)


def recommendations(findings: list[Finding]) -> list[dict[str, str]]:
    """One piece of advice per kind present, the kind with the worst finding first."""
    worst: dict[str, int] = {}
    for f in findings:
        worst[f.kind] = min(worst.get(f.kind, len(SEVERITIES)), RANK[f.severity])
    return [{"kind": kind, "title": ADVICE[kind].title, "advice": ADVICE[kind].advice,
             "before": ADVICE[kind].before, "after": ADVICE[kind].after,
             "docs": docs_link(kind)}
            for kind in sorted(worst, key=lambda k: (worst[k], k))]
