"""``python -m verify``: see verify/cli.py."""

import sys

from .cli import main

sys.exit(main())
