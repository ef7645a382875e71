"""``python -m orchestration.cli``: the same as the ``sluice`` console script."""

import sys

from orchestration.cli import main

sys.exit(main())
