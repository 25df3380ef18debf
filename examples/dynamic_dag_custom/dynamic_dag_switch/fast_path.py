"""The FAST path: a quick estimate from a small sample, when the cluster is busy."""

import random
import sys

from titan_sdk import TitanClient

batch = sys.argv[1] if len(sys.argv) > 1 else "adhoc"  # seed 002 submits it without one
rng = random.Random(batch)
sample = [rng.gauss(100, 15) for _ in range(1_000)]
mean = sum(sample) / len(sample)
TitanClient().store_put(f"switch:{batch}:estimate", f"{mean:.3f}")
print(f"fast scan of {len(sample)} samples: mean {mean:.2f} (approximate)")
