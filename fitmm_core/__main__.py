"""``python -m fitmm_core`` is the ``fitmm`` command."""

import sys

from fitmm_core.cli import main

sys.exit(main())
