"""Run a model server as a Titan service, call it from another job, then stop it.

    titan up                                   # another terminal
    python examples/services/run_services.py

The server (``model_server.py``) is a ``SERVICE`` job: its worker picks a free port, checks
``GET /health`` before calling it ready, and publishes its address under
``services/sentiment#<run>/model`` (and ``services/sentiment/model``, the latest run's);
``client_job.py`` runs beside it (not as its child: a child would wait for the service to
end) and waits for its own run's with ``service_address("model")``. Then the service is stopped
gracefully — SIGTERM, its grace, SIGKILL — and ends COMPLETED, not CANCELLED.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from titan import TitanClient, TitanJob

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    client = TitanClient()
    dag = client.submit_dag("sentiment", [
        TitanJob("model", HERE / "model_server.py", job_type="SERVICE",
                 readiness="http:/health", max_restarts=3, stop_grace=5),
        TitanJob("client", HERE / "client_job.py", args=["model"]),
    ])
    print(f"submitted {dag['ref']}")
    used = client.wait(f"{dag['ref']}/client", timeout=args.timeout)
    print(client.fetch_logs(f"{dag['ref']}/client"))
    model = client.get_job(f"{dag['ref']}/model")
    print(f"service {model['ref']}: {model['state']}, {model['health']} at {model['address']}, "
          f"{model['service']['restarts']} restarts")
    client.stop_service(f"{dag['ref']}/model")
    stopped = client.wait(f"{dag['ref']}/model", timeout=args.timeout)
    print(f"service {stopped['ref']}: {stopped['state']} ({stopped['reason']})")
    return 0 if used["state"] == "COMPLETED" and stopped["state"] == "COMPLETED" else 1


if __name__ == "__main__":
    raise SystemExit(main())
