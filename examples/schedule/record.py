"""The heartbeat's second job: count the beat and say what the probe found."""

from titan import TitanClient

client = TitanClient()
beat = client.store_incr("heartbeat/beats")
free = int(client.store_get("heartbeat/free_bytes") or 0)
print(f"beat {beat}: {free / 2**30:.1f} GiB free")
