"""``python -m parallel.controller``: run a cluster's controller."""

import sys

from ._controller import main

sys.exit(main())
