"""Queries a trivial job costs Titan on PostgreSQL: each is a round trip on the job's path.

Starts `titan up` on a fresh PostgreSQL database whose statements the server logs
(``log_statement = 'all'`` on that database only), runs trivial jobs one at a time (submit,
wait) and then 4-job DAGs (the agent loop of bench/side_by_side.py), and counts the queries
the server logged for each, grouped by their text with numbers and strings masked. A query
holding several statements (``BEGIN; <fence>; <writes>; COMMIT``) went as one round trip and
counts once. Reads the server's log file, so it runs where that file is readable (Debian's
default path below; ``--log`` names another).

    .venv/bin/python bench/pg_queries.py [--jobs 50] [--log /var/log/postgresql/...]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import postgres  # noqa: E402
from side_by_side import TitanSystem  # noqa: E402

LOG = "/var/log/postgresql/postgresql-15-main.log"
_ENTRY = re.compile(r"\n(?=\d{4}-\d\d-\d\d )")  # each log entry starts with its timestamp
_QUERY = re.compile(r"LOG:  (?:statement|execute [^:]*): (.*)", re.DOTALL)


def _shape(query: str) -> str:
    masked = re.sub(r"'[^']*'", "S", " ".join(query.split()))
    return re.sub(r"\b\d+(\.\d+)?\b", "N", masked)


def count(log: str, label: str, n: int, work: Callable[[], object]) -> None:
    start = os.path.getsize(log)
    work()
    time.sleep(0.5)  # the server writes its log a moment after answering
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    queries = [m.group(1) for m in (_QUERY.search(e) for e in _ENTRY.split(text)) if m]
    print(f"{label}: {len(queries) / n:.1f} queries each ({len(queries)} for {n})")
    for shape, k in Counter(_shape(q) for q in queries).most_common(10):
        print(f"  {k / n:5.1f}  {shape[:150]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--log", default=LOG, help="the PostgreSQL server's log file")
    args = ap.parse_args()
    if not os.access(args.log, os.R_OK):
        sys.exit(f"cannot read the server's log {args.log}: name it with --log")
    script = Path(tempfile.mkdtemp()) / "trivial.py"
    script.write_text("pass\n")
    with postgres() as create:
        url = create()
        admin = sa.create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"ALTER DATABASE \"{url.rsplit('/', 1)[1]}\" "
                                 "SET log_statement = 'all'"))
        admin.dispose()
        titan = TitanSystem(str(script), "fork", url)
        try:
            titan.latency(5)
            titan.loop(2, 4)
            time.sleep(1.0)
            count(args.log, "trivial job (submit, wait)", args.jobs,
                  lambda: titan.latency(args.jobs))
            count(args.log, "agent loop iteration (4-job DAG, wait)", args.jobs,
                  lambda: titan.loop(args.jobs, 4))
        finally:
            titan.cluster.close()


if __name__ == "__main__":
    main()
