"""One step of examples/builder/nightly.yaml: says which step it is and leaves a mark in the
store, so the run shows each step's log and the steps' order."""

import sys

from titan import TitanClient

step = sys.argv[1] if len(sys.argv) > 1 else "step"
TitanClient().store_sadd("nightly_report/steps", step)
print(f"{step}: done")
