"""``python -m titan``: the ``titan`` command."""

from titan.cli import main

raise SystemExit(main())
