"""The Go behaviour bindings reproduce (encoding/json, strconv.Unquote, base64), the HTTP API's request
decoding, and how `direction` decides which sides of a binding a sidecar uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from localdapr.bindings.base import InputBinding, InvokeRequest, InvokeResponse, OutputBinding
from localdapr.bindings.gocompat import (
    canonical_header_key,
    decode_base64,
    decode_json,
    marshal_json,
    time_string_utc,
    unquote,
)
from localdapr.bindings.runtime import LoadedBinding, grpc_call_metadata, request_from_http
from localdapr.components.spec import ComponentSpec
from localdapr.errors import DaprError


@pytest.mark.parametrize(
    ("document", "go"),
    [
        ('"Hello"', '"Hello"'),
        ("1", "1"),
        ("1.0", "1"),
        ("2.50", "2.5"),
        ("-0.0", "-0"),
        ("0.00001", "0.00001"),
        ("1.5e-7", "1.5e-7"),
        ("1e21", "1e+21"),
        ("1e20", "100000000000000000000"),
        ("123456789012345678901", "123456789012345680000"),  # float64, as Go decodes it
        ('{"b": 1, "a": [true, null]}', '{"a":[true,null],"b":1}'),
        ('"<a & b>"', '"\\u003ca \\u0026 b\\u003e"'),
        ('"caf\\u00e9\\n\\t\\u0001\\u2028"', '"café\\n\\t\\u0001\\u2028"'),
    ],
)
def test_marshal_like_go(document: str, go: str) -> None:
    assert marshal_json(decode_json(document.encode())) == go.encode()


@pytest.mark.parametrize("document", ["NaN", "Infinity", "1e400", "{"])
def test_decode_refuses_what_go_refuses(document: str) -> None:
    with pytest.raises(ValueError):
        decode_json(document.encode())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'"Hello World"', b"Hello World"),
        (b'"line\\nbreak \\"q\\" \\\\ \\u00e9"', 'line\nbreak "q" \\ é'.encode()),
        (b'"\\x41\\101\\a"', b"AA\x07"),
        (b"`raw \\n`", b"raw \\n"),
        (b"'x'", b"x"),
        (b"'xy'", None),
        (b'"\\/"', None),  # JSON allows \/, Go does not
        (b'"a"b"', None),
        (b'"\\\'"', None),  # \' only inside '...'
        (b"plain", None),
        (b'"', None),
    ],
)
def test_unquote_like_go(raw: bytes, expected: bytes | None) -> None:
    assert unquote(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"aGVsbG8=", b"hello"),
        (b"aGVs\nbG8=", b"hello"),  # Go skips CR and LF
        (b"dGVzdA==", b"test"),
        (b"test", b"\xb5\xeb\x2d"),  # valid base64 too: daprd's localstorage decodes it
        (b"", b""),
        (b"aGVsbG8", None),  # unpadded
        (b"Hello World", None),
        (b"ab=c", None),
    ],
)
def test_base64_like_go(raw: bytes, expected: bytes | None) -> None:
    assert decode_base64(raw) == expected


def test_header_keys_and_times() -> None:
    assert canonical_header_key("content-type") == "Content-Type"
    assert canonical_header_key("x-MY-header") == "X-My-Header"
    assert canonical_header_key("bad key") == "bad key"
    assert time_string_utc(1714557603.25) == "2024-05-01 10:00:03.25 +0000 UTC"
    assert time_string_utc(1714557603.0) == "2024-05-01 10:00:03 +0000 UTC"


def test_http_request_decoding() -> None:
    request = request_from_http(b'{"operation": "create", "data": "x", "metadata": {"fileName": "a"}}')
    assert request == InvokeRequest("create", b'"x"', {"fileName": "a"})
    assert request_from_http(b'{"Operation": "get"}') == InvokeRequest("get", b"null", {})
    for bad in (b"{", b"[]", b'{"operation": 1}', b'{"metadata": {"a": 1}}'):
        with pytest.raises(DaprError) as info:
            request_from_http(bad)
        assert info.value.code == "ERR_MALFORMED_REQUEST" and info.value.http_status == 400


def test_grpc_call_metadata_renames_reserved_keys() -> None:
    pairs = [("traceparent", "00-1-2-01"), ("grpc-timeout", "1S"), (":authority", "h"), ("x-bin", b"\x00")]
    assert grpc_call_metadata(pairs) == {
        "traceparent": "00-1-2-01",
        "dapr-timeout": "1S",
        "dapr-authority": "h",
    }


class _Both(InputBinding, OutputBinding):
    operations = ("create",)

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> _Both:
        return cls()

    async def read(self, handler: object) -> None:
        return None

    async def invoke(self, request: InvokeRequest) -> InvokeResponse | None:
        return None


def _spec(metadata: dict[str, str]) -> ComponentSpec:
    spec = ComponentSpec("b", "bindings.both", "v1", [], [], None, Path("b.yaml"))
    spec.metadata = metadata
    return spec


@pytest.mark.parametrize(
    ("metadata", "sides", "explicit", "route"),
    [
        ({}, ["INPUT_BINDING", "OUTPUT_BINDING"], False, "b"),
        ({"direction": "input"}, ["INPUT_BINDING"], True, "b"),
        ({"Direction": "output"}, ["OUTPUT_BINDING"], False, "b"),
        ({"direction": " Input , OUTPUT "}, ["INPUT_BINDING", "OUTPUT_BINDING"], True, "b"),
        ({"direction": "inptu"}, [], False, "b"),  # daprd: a direction naming neither serves neither
        ({"route": "/elsewhere"}, ["INPUT_BINDING", "OUTPUT_BINDING"], False, "/elsewhere"),
    ],
)
def test_direction_and_route(metadata: dict[str, str], sides: list[str], explicit: bool, route: str) -> None:
    loaded = LoadedBinding.of(_spec(metadata), _Both())
    assert loaded.capabilities == sides
    assert loaded.explicit_input is explicit
    assert loaded.route == route
