"""``python -m sqlml.local``: the same as ``sqlml serve`` (see supervisor.py)."""

import sys

from .supervisor import main

sys.exit(main())
