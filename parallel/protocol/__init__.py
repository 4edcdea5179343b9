"""What travels between Loom's parallel client, controller and engines (pure).

``_serialize``: can/uncan of ``apply_request`` calls and ``apply_reply`` results
as frame lists (cloudpickle, pickle protocol 5, large buffers out of band).
Names load lazily (PEP 562): importing the package imports neither pickle
machinery nor cloudpickle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernel._lazy import lazy_exports

__all__ = [
    "OUT_OF_BAND_MIN",
    "Frame",
    "SerializationError",
    "deserialize_call",
    "deserialize_object",
    "serialize_call",
    "serialize_object",
]

_EXPORTS = {
    "SerializationError": ".._errors",
    "OUT_OF_BAND_MIN": "._serialize",
    "Frame": "._serialize",
    "deserialize_call": "._serialize",
    "deserialize_object": "._serialize",
    "serialize_call": "._serialize",
    "serialize_object": "._serialize",
}

if TYPE_CHECKING:
    from .._errors import SerializationError
    from ._serialize import (
        OUT_OF_BAND_MIN,
        Frame,
        deserialize_call,
        deserialize_object,
        serialize_call,
        serialize_object,
    )

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
