"""``python -m nasforge.allocator``: which allocator the ``nasforge`` command runs under."""

import sys

from . import _main

sys.exit(_main())
