"""Extract: produce the day's training rows and leave them in TitanStore for the next job."""

import json
import random

from titan_sdk import TitanClient

rng = random.Random(7)
rows = [(x, 3.0 * x + 2.0 + rng.gauss(0, 0.5)) for x in (rng.uniform(0, 10) for _ in range(42))]
TitanClient().store_put("nightly_pipeline:rows", json.dumps(rows))
print(f"extracted {len(rows)} rows")
