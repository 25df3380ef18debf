"""`python examples/worker_skill_based_test/gpu_project_test`: seed 002 names this example by
its folder, so the folder runs gpu_project_test.py (with the same arguments)."""

import os
import runpy

# run_path, not an import: the script finds its sibling files from its own __file__.
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_project_test.py"),
               run_name="__main__")
