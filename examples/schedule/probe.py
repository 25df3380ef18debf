"""The heartbeat's first job: how much disk is free where the worker runs its jobs."""

import shutil

from titan import TitanClient

free = shutil.disk_usage(".").free
TitanClient().store_put("heartbeat/free_bytes", str(free))
print(f"{free / 2**30:.1f} GiB free")
