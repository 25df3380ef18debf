"""A tiny coding agent for the coding-run example: it fixes the bug the task describes in the
seeded repository and runs the tests, through ``titan.evals.coding.sh`` so each command and
its output are part of the run's trajectory.

Titan runs it inside the task's workspace (``TITAN_EVAL_WORKSPACE``); afterwards the job
computes the final diff against the seeded baseline and runs the task's scorers. In a
multi-turn session (``session_evaluation.yaml``) it runs once per turn: ``TITAN_EVAL_TURN``
says which, and the task's instruction is that turn's. Being a script, not a model, it does
what each turn of the example asks: fix add(), then add sub() with a test.
"""

from __future__ import annotations

import os
from pathlib import Path

from titan import evals
from titan.evals.coding import sh


def add_subtraction(root: Path) -> None:
    """The second turn of the session example: a sub() and a test for it."""
    with (root / "calc.py").open("a") as fh:
        fh.write("\n\ndef sub(a, b):\n    return a - b\n")
    (root / "test_sub.py").write_text("from calc import sub\n\nassert sub(5, 3) == 2\n"
                                      "print('ok')\n")
    result = sh("python test_sub.py")
    outcome = "its test passes" if result.returncode == 0 else "its test fails"
    evals.respond(f"Added sub() to calc.py with test_sub.py; {outcome}.")


def main() -> None:
    task = evals.task()
    root = Path(os.environ.get("TITAN_EVAL_WORKSPACE", "."))
    turn = os.environ.get("TITAN_EVAL_TURN")
    print(f"[coding-agent] {'turn ' + turn + ': ' if turn else ''}{task['user_instruction']}")
    if turn == "2":
        add_subtraction(root)
        return
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
