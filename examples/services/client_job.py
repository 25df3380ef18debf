"""A job that uses the model server: it finds the service's address in TitanStore (the key
is there once the service is ready) and calls it."""

from __future__ import annotations

import json
import sys
import urllib.request

from titan import TitanClient

key = sys.argv[1]  # services/<dag>/<job_id>
address = TitanClient().store_wait(key, timeout=120)
print(f"the model is at {address}")
for text in ("Titan is fast and works great", "the old cron box was slow and broken",
             "a DAG of jobs"):
    request = urllib.request.Request(f"http://{address}/predict", method="POST",
                                     data=json.dumps({"text": text}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        answer = json.load(reply)
    print(f"{answer['label']:>8} ({answer['score']:+d})  {text}")
