"""One shard of the DEEP analysis: sums over its slice of the data, left in TitanStore."""

import json
import random
import sys

from titan_sdk import TitanClient

batch, shard, shards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(f"{batch}:{shard}")
values = [rng.gauss(100, 15) for _ in range(50_000)]
partial = {"n": len(values), "sum": sum(values), "sumsq": sum(v * v for v in values)}
TitanClient().store_put(f"switch:{batch}:shard:{shard}", json.dumps(partial))
print(f"shard {shard + 1}/{shards}: {partial['n']} values")
