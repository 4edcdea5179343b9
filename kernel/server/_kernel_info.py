"""The ``kernel_info_reply`` content: what this kernel is, truthfully."""

from __future__ import annotations

import platform
import sys
from functools import cache

from kernel import __version__
from kernel.protocol import PROTOCOL_VERSION, JSONDict

__all__ = ["kernel_info_content"]

IMPLEMENTATION_VERSION = __version__


@cache
def kernel_info_content() -> JSONDict:
    version = ".".join(map(str, sys.version_info[:3]))
    return {
        "status": "ok",
        "protocol_version": PROTOCOL_VERSION,
        "implementation": "loom",
        "implementation_version": IMPLEMENTATION_VERSION,
        "language_info": {
            "name": "python",
            "version": version,
            "mimetype": "text/x-python",
            "file_extension": ".py",
            "pygments_lexer": "python3",
            "codemirror_mode": {"name": "ipython", "version": 3},
            "nbconvert_exporter": "python",
        },
        "banner": (
            f"Loom {IMPLEMENTATION_VERSION} kernel on Python {version} "
            f"({platform.python_implementation()})\nType obj? for help on obj, %lsmagic for magics."
        ),
        "help_links": [
            {
                "text": "Python Reference",
                "url": f"https://docs.python.org/{version[:4].rstrip('.')}",
            },
        ],
        "supported_features": [],
        "debugger": False,
    }
