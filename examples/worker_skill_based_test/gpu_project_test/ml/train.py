"""Train: fit the rows the extract job left, on whichever worker advertised ``GPU``."""

import json
import os
import shutil
import socket

from titan_sdk import TitanClient

rows = json.loads(TitanClient().store_get("nightly_pipeline:rows") or "[]")
if not rows:
    raise SystemExit("no rows: did extract_data run?")
n = len(rows)
mx = sum(x for x, _ in rows) / n
my = sum(y for _, y in rows) / n
slope = sum((x - mx) * (y - my) for x, y in rows) / sum((x - mx) ** 2 for x, _ in rows)
device = "a GPU" if shutil.which("nvidia-smi") or os.environ.get("CUDA_VISIBLE_DEVICES") \
    else "no GPU device (the routing is by capability)"
print(f"trained on {socket.gethostname()} with {device}: y = {slope:.2f} x + {my - slope * mx:.2f}")
