"""Seed 002's "Recursive Agent": an agent that keeps its memory in TitanStore and respawns itself.

The code below is the seed's, as written (imports sorted). Each run tries a fragile task (a
coin flip standing in for an unstable API); on failure it counts the attempt in the store key
``agent_retry_count`` and submits a clone of itself, which may land on any worker and reads the
count back. After three failures it escalates and exits 1; success or escalation reset the
count.

Submit it to the cluster once (``titan up`` running); from then on it manages its own life::

    titan submit examples/stateful_agent/pipeline.yaml --wait

(or run the first attempt on this machine: ``python examples/stateful_agent/autonomous_agent.py``;
its clones run on the cluster either way).
"""

import random

from titan_sdk import TitanClient, TitanJob

client = TitanClient()

# 1. Agent wakes up and checks its global memory
# (Defaults to 0 if this is the first time running)
current_attempts = int(client.store_get("agent_retry_count") or 0)

print(f"[INFO] Agent Booting... (Attempt {current_attempts + 1} of 3)")

if current_attempts >= 3:
    print("[ESCALATION] Task failed 3 times. Halting recursion and alerting human.")
    client.store_put("agent_retry_count", "0") # Reset for future runs
    exit(1)

# 2. Attempt the fragile task (e.g., calling an unstable API)
api_success = random.choice([True, False])

if api_success:
    print("[SUCCESS] Task completed! Agent terminating.")
    client.store_put("agent_retry_count", "0") # Reset memory
else:
    print("[WARNING] Task failed. Agent logging failure and respawning...")

    # 3. Update global memory so the NEXT clone knows what happened
    client.store_put("agent_retry_count", str(current_attempts + 1))

    # 4. Agent dynamically spawns a clone of itself to try again!
    retry_job = TitanJob(
        job_id=f"agent_retry_{current_attempts + 1}",
        filename="autonomous_agent.py"
    )
    client.submit_job(retry_job)
