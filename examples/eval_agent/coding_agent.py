"""A tiny coding agent for the coding-run example: it fixes the bug the task describes in the
seeded repository and runs the tests, through ``titan.evals.coding.sh`` so each command and
its output are part of the run's trajectory.

Titan runs it inside the task's workspace (``TITAN_EVAL_WORKSPACE``); afterwards the job
computes the final diff against the seeded baseline and runs the task's scorers.
"""

from __future__ import annotations

import os
from pathlib import Path

from titan import evals
from titan.evals.coding import sh


def main() -> None:
    task = evals.task()
    root = Path(os.environ.get("TITAN_EVAL_WORKSPACE", "."))
    print(f"[coding-agent] task: {task['user_instruction']}")
    sh("ls")
    source = root / "calc.py"
    text = source.read_text()
    fixed = text.replace("return a - b", "return a + b")
    source.write_text(fixed)
    result = sh("python test_calc.py")
    outcome = "the tests pass" if result.returncode == 0 else "the tests still fail"
    evals.respond(f"Fixed add() in calc.py (it subtracted); {outcome}.")


if __name__ == "__main__":
    main()
