"""The actor runtime's serializer (messages and state) with orjson: the SDK's values and bytes, less CPU.

The SDK's `DefaultJSONSerializer` decodes every actor call's argument and every reminder's body with
`DaprJSONDecoder`, which builds a pure-Python scanner on each call and turns every string value that
starts like a date into a `datetime` and every one that is a whole Dapr duration ("0h0m30s") into a
`timedelta`. On the equipment app that is one decode per reading and per silence-check reminder.
This serializer decodes with orjson and then applies the very same string rule (the SDK's own regexes
and converters) to the same strings: values, never object keys, as the SDK's scanner does. Whatever
orjson refuses (NaN/Infinity literals, UTF-16/32, a byte-order mark, lone surrogate escapes, text that
is no JSON) and any body with a run of 19 digits (orjson reads an integer past 64 bits as a float)
goes to the SDK's decoder, which decides as before.

Encoding is the SDK's but for an ASCII string without DEL, which orjson writes byte for byte as the SDK's
`json.dumps(..., ensure_ascii=True)` does, at a tenth of the CPU: the equipment actor's state is one
such string (its JSON text, ~8-15 KB, every save) and so is its answer to `Ingest`. It is plugged in
through the SDK's seams: `register_actor(..., message_serializer=ActorSerializer(),
state_serializer=ActorSerializer())`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson
from dapr.serializers import DefaultJSONSerializer
from dapr.serializers.json import DaprJSONDecoder
from dapr.serializers.util import DAPR_DURATION_PARSER, convert_from_dapr_duration
from dateutil import parser as date_parser

from apps.common.httpguard import loads_orjson_first


def _as_sdk_reads(value: Any) -> Any:
    """`value` with its strings read as `DaprJSONDecoder.custom_scanstring` reads them."""
    if isinstance(value, str):
        if DaprJSONDecoder.datetime_regex.match(value):
            return date_parser.parse(value)
        duration = DAPR_DURATION_PARSER.match(value)
        if duration is not None and duration.lastindex is not None:
            return convert_from_dapr_duration(value)
        return value
    if isinstance(value, list):
        return [_as_sdk_reads(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_sdk_reads(item) for key, item in value.items()}
    return value


# What `loads_orjson_first` answers for a body orjson must not decide: the SDK's decoder does.
_FOR_THE_SDK: Final = object()


def _for_the_sdk(body: bytes) -> object:
    return _FOR_THE_SDK


class ActorSerializer(DefaultJSONSerializer):
    """`DefaultJSONSerializer` whose `deserialize` decodes with orjson, and whose `serialize` encodes an
    ASCII string with it (same results, same bytes)."""

    def serialize(self, obj: object, custom_hook: Callable[[object], bytes] | None = None) -> bytes:
        # str.isascii() reads a flag CPython keeps on the string: no scan. Non-ASCII text and DEL are
        # escaped differently (orjson writes them as they are, the SDK as \uXXXX): the SDK's.
        if (
            type(obj) is str
            and custom_hook is None
            and self.ensure_ascii
            and obj.isascii()
            and "\x7f" not in obj
        ):
            return orjson.dumps(obj)
        return super().serialize(obj, custom_hook)

    def deserialize(
        self,
        data: bytes,
        data_type: type | None = object,
        custom_hook: Callable[[bytes], object] | None = None,
    ) -> Any:
        if not isinstance(data, (str, bytes)):
            raise ValueError("data must be str or bytes types")
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        obj = loads_orjson_first(raw, _for_the_sdk)
        if obj is _FOR_THE_SDK:
            return super().deserialize(data, data_type, custom_hook)
        obj = _as_sdk_reads(obj)
        return custom_hook(obj) if callable(custom_hook) else obj
