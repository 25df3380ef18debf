"""`python examples/dynamic_dag_custom/dynamic_dag_switch`: seed 002 names this example by its
folder, so the folder runs dynamic_dag_switch.py (with the same arguments)."""

import os
import runpy

# run_path, not an import: the script finds its sibling files from its own __file__.
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "dynamic_dag_switch.py"),
               run_name="__main__")
