"""The static read of a job script's imports that routes it to the lean or the full zygote."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from titan.worker import imports


def test_imports_are_read_from_anywhere_in_the_source() -> None:
    source = ("import os, sys\nfrom collections import deque\nfrom titan.client import X\n"
              "def f():\n    import json.decoder\n")
    assert imports.imported(source) == {("os", ()), ("sys", ()), ("collections", ("deque",)),
                                        ("titan.client", ("X",)), ("json.decoder", ())}
    # What a static read cannot know sends the script to the full zygote.
    assert imports.imported("from . import helpers") is None
    assert imports.imported("import importlib\nimportlib.import_module('x')") is None
    assert imports.imported("m = __import__('x')") is None
    assert imports.imported("def (") is None


def test_a_script_fits_when_every_import_is_loaded(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "mod.py").write_text("")
    loaded = frozenset({"os", "json", "pkg"})
    packages = {"pkg": [str(pkg)]}

    versions = itertools.count(1)

    def fits(source: str) -> bool:
        script = tmp_path / "job.py"
        script.write_text(source)
        # A new version of the file each time (the cache keys on size, mtime and inode): a
        # distinct mtime per call, never one two sources of the same size could share.
        stamp = next(versions) * 10**9
        os.utime(script, ns=(stamp, stamp))
        return imports.fits(script, loaded, packages)

    assert fits("import os\nimport json\n")
    assert fits("from os import path\n")  # an attribute of a loaded module
    assert fits("from pkg import helper_function\n")  # not a file of the package
    assert not fits("from pkg import mod\n")  # a submodule the lean zygote has not loaded
    assert not fits("from pkg import sub\n")  # a subpackage, likewise
    assert not fits("from pkg import *\n")
    assert not fits("import numpy\n")
    assert fits("")  # nothing imported: the lean zygote has all of it
    assert not imports.fits(tmp_path / "missing.py", loaded, packages)


def test_the_read_is_cached_per_file_version(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("import os\n")
    first = imports.script_imports(script)
    assert imports.script_imports(script) is first
    script.write_text("import os, numpy\n")  # a new size: a new version
    assert imports.script_imports(script) == {("os", ()), ("numpy", ())}
