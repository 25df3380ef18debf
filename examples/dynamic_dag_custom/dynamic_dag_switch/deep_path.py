"""One shard of the DEEP analysis: sums over its slice of the data, left in TitanStore."""

import json
import os
import random
import sys

from titan_sdk import TitanClient

if len(sys.argv) >= 4:  # as the switch submits it: batch, shard, shards
    batch, shard, shards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
else:  # as seed 002 submits it, with no arguments: job deep_<i> of ten is shard i
    suffix = os.environ.get("TITAN_JOB_ID", "deep_0").rpartition("_")[2]
    batch, shard, shards = "adhoc", int(suffix) if suffix.isdigit() else 0, 10
rng = random.Random(f"{batch}:{shard}")
values = [rng.gauss(100, 15) for _ in range(50_000)]
partial = {"n": len(values), "sum": sum(values), "sumsq": sum(v * v for v in values)}
TitanClient().store_put(f"switch:{batch}:shard:{shard}", json.dumps(partial))
print(f"shard {shard + 1}/{shards}: {partial['n']} values")
