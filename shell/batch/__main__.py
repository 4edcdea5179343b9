"""``python -m shell.batch ARGS``: ``loom run ARGS`` without the ``loom`` command."""

import sys

from ._run import main

sys.exit(main())
