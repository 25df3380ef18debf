"""The DEEP analysis' last step: merge every shard's sums into the exact mean and deviation."""

import json
import math
import sys

from titan_sdk import TitanClient

batch, shards = sys.argv[1], int(sys.argv[2])
client = TitanClient()
parts = [json.loads(client.store_get(f"switch:{batch}:shard:{i}") or "{}") for i in range(shards)]
missing = [i for i, p in enumerate(parts) if not p]
if missing:
    sys.exit(f"shards {missing} left no result")
n = sum(p["n"] for p in parts)
mean = sum(p["sum"] for p in parts) / n
std = math.sqrt(sum(p["sumsq"] for p in parts) / n - mean * mean)
print(f"deep analysis of {n} values over {shards} shards: mean {mean:.2f}, std {std:.2f}")
