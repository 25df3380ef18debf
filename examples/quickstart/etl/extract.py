"""The README quickstart's first step: "extract" some rows and leave them in TitanStore."""

import json

from titan import TitanClient

rows = [{"day": day, "sales": 100 + 7 * day} for day in range(1, 8)]
TitanClient().store_put("quickstart:rows", json.dumps(rows))
print(f"extracted {len(rows)} rows")
