"""``python -m meterplane`` is the same as the ``meterplane`` console script."""

from meterplane.cli import main

raise SystemExit(main())
