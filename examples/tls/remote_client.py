"""A client on another machine talking to a `titan up --tls` master, trusting its self-signed
certificate by the fingerprint the master's banner printed (no file to copy) — or by a copy of
the certificate with --ca-file.

    # on the master's machine
    titan up --tls --host 0.0.0.0
    #   TLS  .../tls/cert.pem (sha256:5a39...); clients elsewhere: ...
    # anywhere else (with a token from `titan token create --role operator`)
    TITAN_TOKEN=... python examples/tls/remote_client.py https://master:9090 --fingerprint sha256:5a39...

It checks the connection, then runs one job whose own SDK calls reach the master over HTTPS
too (the worker passes the trust setting on to its jobs).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from titan import TitanClient, TitanJob

JOB = """
import os
from titan import TitanClient
TitanClient().store_put("tls-example/" + os.environ["TITAN_JOB_ID"], "written over HTTPS")
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="the master's https:// URL")
    trust = p.add_mutually_exclusive_group(required=True)
    trust.add_argument("--fingerprint", help="sha256:<hex>, as the master's banner printed it")
    trust.add_argument("--ca-file", help="a copy of the master's certificate (or its CA)")
    args = p.parse_args()
    # This client's SDK reads these. The job below does not get them from here: the worker
    # that runs it passes its own trust setting on to it.
    if args.fingerprint:
        os.environ["TITAN_TLS_FINGERPRINT"] = args.fingerprint
    else:
        os.environ["TITAN_CA_FILE"] = str(Path(args.ca_file).resolve())
    client = TitanClient(url=args.url)
    print("master:", client.health()["status"], "over", args.url.split(":", 1)[0])
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "tls_example_job.py"
        script.write_text(JOB)
        dag = client.submit_dag("tls_example", [TitanJob(job_id="hello", filename=str(script))])
        done = client.wait_dag(dag["id"], timeout=120)
    print("DAG", done["status"], "-", client.store_get("tls-example/hello"))
    return 0 if done["status"] == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
