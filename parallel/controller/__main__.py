"""``python -m parallel.controller``: run a cluster's controller."""

import sys

from ._main import main

sys.exit(main())
