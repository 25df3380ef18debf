"""The patch the healer deploys: the same training, in safe mode, with the batch size it chose.

Safe mode trades speed for memory: gradient accumulation keeps the effective batch while each
micro-batch fits.
"""

import argparse
import math
import sys

ap = argparse.ArgumentParser()
# Seed 002's healer submits it with no arguments: a micro-batch that fits by default.
ap.add_argument("--batch-size", type=int, default=32, help="micro-batch size (default 32)")
ap.add_argument("--effective-batch", type=int, default=256)
ap.add_argument("--steps", type=int, default=5)
args = ap.parse_args()

MEMORY_MB, PER_SAMPLE_MB = 4096, 60
if args.batch_size * PER_SAMPLE_MB > MEMORY_MB:
    print(f"RuntimeError: OutOfMemory: a micro-batch of {args.batch_size} still does not fit",
          file=sys.stderr)
    sys.exit(1)
accumulate = max(1, math.ceil(args.effective_batch / args.batch_size))
print(f"safe mode: micro-batch {args.batch_size} x {accumulate} accumulation steps "
      f"(effective batch {args.batch_size * accumulate})")
for step in range(1, args.steps + 1):
    print(f"step {step}: loss {2.0 * math.exp(-0.4 * step) + 0.1:.3f}")
print("patched in safe mode: training finished")
