"""A training run that is too greedy: above a batch size of 64 it runs out of memory.

    flaky_training.py --batch-size 256        # dies with OutOfMemory, as a real run would
"""

import argparse
import math
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--batch-size", type=int, default=256)
ap.add_argument("--steps", type=int, default=5)
args = ap.parse_args()

MEMORY_MB, PER_SAMPLE_MB = 4096, 60  # what this pretend accelerator holds, what a sample costs
for step in range(1, args.steps + 1):
    needed = args.batch_size * PER_SAMPLE_MB
    if needed > MEMORY_MB:
        print(f"step {step}: allocating {needed} MB for a batch of {args.batch_size}", flush=True)
        print(f"RuntimeError: OutOfMemory: tried to allocate {needed} MB "
              f"({MEMORY_MB} MB total capacity)", file=sys.stderr)
        sys.exit(1)
    loss = 2.0 * math.exp(-0.4 * step) + 0.1
    print(f"step {step}: batch {args.batch_size}, loss {loss:.3f}")
print("training finished")
