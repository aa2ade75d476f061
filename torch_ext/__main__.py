"""``python -m torch_ext``: the command line (torch_ext.cli)."""

from torch_ext.cli import main

raise SystemExit(main())
