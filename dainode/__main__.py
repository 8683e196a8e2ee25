"""Allow `python -m dainode`."""

from dainode.cli import main

raise SystemExit(main())
