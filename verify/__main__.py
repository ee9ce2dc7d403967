"""``python -m verify``: see verify/mesh.py."""

import sys

from .mesh import main

sys.exit(main())
