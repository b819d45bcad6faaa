"""``python -m pwfl``: the same as the ``pwfl`` command."""

import sys

from pwfl.cli import main

sys.exit(main())
