"""The README quickstart's second step: "train" on what extract left, print the model."""

import json

from titan import TitanClient

rows = json.loads(TitanClient().store_get("quickstart:rows") or "[]")
n = len(rows)
mean_x = sum(r["day"] for r in rows) / n
mean_y = sum(r["sales"] for r in rows) / n
slope = (sum((r["day"] - mean_x) * (r["sales"] - mean_y) for r in rows)
         / sum((r["day"] - mean_x) ** 2 for r in rows))
print(f"trained on {n} rows: sales = {mean_y - slope * mean_x:.1f} + {slope:.1f} * day")
