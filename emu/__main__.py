"""python -m emu: the same as the `emu` command."""

import sys

from .cli import main

sys.exit(main())
