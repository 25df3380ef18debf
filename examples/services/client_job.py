"""A job that uses the model server: it waits for the address of its own run's service (the
store key ``services/<dag>#<run>/<job_id>``, there once the service is ready) and calls it."""

from __future__ import annotations

import json
import sys
import urllib.request

from titan import TitanClient

service = sys.argv[1]  # the service's job id, in this job's own DAG run
address = TitanClient().service_address(service, timeout=120)
print(f"the model is at {address}")
for text in ("Titan is fast and works great", "the old cron box was slow and broken",
             "a DAG of jobs"):
    request = urllib.request.Request(f"http://{address}/predict", method="POST",
                                     data=json.dumps({"text": text}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        answer = json.load(reply)
    print(f"{answer['label']:>8} ({answer['score']:+d})  {text}")
