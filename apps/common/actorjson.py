"""The actor runtime's message serializer with orjson's decoding: the SDK's answers, less CPU.

The SDK's `DefaultJSONSerializer` decodes every actor call's argument and every reminder's body with
`DaprJSONDecoder`, which builds a pure-Python scanner on each call and turns every string value that
starts like a date into a `datetime` and every one that is a whole Dapr duration ("0h0m30s") into a
`timedelta`. On the equipment app that is one decode per reading and per silence-check reminder.
This serializer decodes with orjson and then applies the very same string rule (the SDK's own regexes
and converters) to the same strings: values, never object keys, as the SDK's scanner does. Whatever
orjson refuses (NaN/Infinity literals, UTF-16/32, a byte-order mark, lone surrogate escapes, text that
is no JSON) and any body with a run of 19 digits (orjson reads an integer past 64 bits as a float)
goes to the SDK's decoder, which decides as before. Encoding is the SDK's. It is plugged in through
the SDK's seam: `register_actor(..., message_serializer=ActorMessageSerializer())`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

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


class ActorMessageSerializer(DefaultJSONSerializer):
    """`DefaultJSONSerializer` whose `deserialize` decodes with orjson (same results)."""

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
