"""bindings.http: an output binding that calls an HTTP endpoint (components-contrib's bindings/http).

Metadata: `url` (required), `responseTimeout` (Go duration; none by default), `maxResponseBodySize`
(bytes or a quantity such as "10Mi"; 100Mi by default, <= 0 for no limit; longer bodies are cut, as
daprd cuts them), `errorIfNot2XX` (default true), `securityToken` + `securityTokenHeader`.

Each operation is an HTTP method (get, head, post, put, patch, delete, options, trace; create = post);
post, put and patch send the data as body. Request metadata: `path` is appended to the url,
`errorIfNot2XX` overrides the component's, keys that start with a capital letter are request headers,
and `traceparent`, `tracestate` and `baggage` are passed on. The answer carries the body as data and
`statusCode`, `status` ("404 Not Found") and every response header (canonical name, values joined
with ", ") as metadata; with errorIfNot2XX a status outside 2xx is an error that still returns that
metadata. As Go's client does, responses are requested gzip-compressed unless the caller chose an
Accept-Encoding, and decompressed (without Content-Encoding and Content-Length) before they are
returned; redirects are followed.
"""

from __future__ import annotations

import re
import zlib

import aiohttp
from multidict import CIMultiDict

from localdapr.bindings.base import BindingError, InvokeRequest, InvokeResponse, OutputBinding
from localdapr.bindings.gocompat import canonical_header_key, is_truthy
from localdapr.components.spec import ComponentSpec
from localdapr.durations import parse_go_duration

_BODY_METHODS = ("POST", "PUT", "PATCH")
_TRACE_KEYS = ("traceparent", "tracestate", "baggage")
_MTLS = ("mtlsRootCA", "mtlsClientCert", "mtlsClientKey", "mtlsRenegotiation")
_QUANTITY = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?\s*")
_UNITS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
DEFAULT_MAX_BODY = 100 * 2**20


class HttpBinding(OutputBinding):
    operations = ("create", "get", "head", "post", "put", "patch", "delete", "options", "trace")

    def __init__(
        self,
        url: str,
        timeout: float | None,
        max_body: int,
        error_if_not_2xx: bool,
        token_header: tuple[str, str] | None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.max_body = max_body
        self.error_if_not_2xx = error_if_not_2xx
        self.token_header = token_header
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> HttpBinding:
        url = spec.require("url")
        tls = [key for key in _MTLS if spec.metadata.get(key)]
        if tls:
            raise spec.fail(f"metadata field {tls[0]!r}: mTLS is not supported by localdapr's bindings.http")
        timeout = None
        if spec.metadata.get("responseTimeout"):
            try:
                timeout = parse_go_duration(spec.metadata["responseTimeout"])
            except ValueError as exc:
                raise spec.fail(f"metadata field 'responseTimeout': {exc}") from exc
        max_body = DEFAULT_MAX_BODY
        if spec.metadata.get("maxResponseBodySize"):
            raw = spec.metadata["maxResponseBodySize"]
            match = _QUANTITY.fullmatch(raw)
            if match is None:
                raise spec.fail(
                    f"invalid value for maxResponseBodySize: {raw!r} (bytes, or a quantity such as 10Mi)"
                )
            max_body = int(float(match.group(1)) * _UNITS[match.group(2)])
        token, header = spec.metadata.get("securityToken", ""), spec.metadata.get("securityTokenHeader", "")
        error_flag = spec.metadata.get("errorIfNot2XX", "")
        return cls(
            url=url,
            timeout=timeout if timeout and timeout > 0 else None,
            max_body=max_body,
            error_if_not_2xx=is_truthy(error_flag) if error_flag else True,
            token_header=(header, token) if token and header else None,
        )

    async def init(self) -> None:
        # Decompression is done here, the way Go's transport does it (see the module docstring).
        self._session = aiohttp.ClientSession(auto_decompress=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        assert self._session is not None, "init() was not awaited"
        metadata = request.metadata
        url = self.url
        if metadata.get("path"):
            url = url.rstrip("/") + "/" + metadata["path"].lstrip("/")
        error_if_not_2xx = self.error_if_not_2xx
        if metadata.get("errorIfNot2XX"):
            error_if_not_2xx = is_truthy(metadata["errorIfNot2XX"])
        method = "POST" if request.operation == "create" else request.operation.upper()
        body = request.data if method in _BODY_METHODS else None
        headers: CIMultiDict[str] = CIMultiDict()
        if body is not None and "Content-Type" not in metadata:
            headers["Content-Type"] = "application/json; charset=utf-8"
        if "Accept" not in metadata:
            headers["Accept"] = "application/json; charset=utf-8"
        if self.token_header is not None:
            headers[self.token_header[0]] = self.token_header[1]
        for key, value in metadata.items():
            if key[:1].isascii() and key[:1].isupper():
                headers[key] = value
        for key in _TRACE_KEYS:
            if metadata.get(key):
                headers[key] = metadata[key]
        gunzip = "Accept-Encoding" not in headers and "Range" not in headers and method != "HEAD"
        if gunzip:
            headers["Accept-Encoding"] = "gzip"
        try:
            async with self._session.request(
                method,
                url,
                data=body,
                headers=headers,
                skip_auto_headers=("Accept-Encoding", "Content-Type"),
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=15),
            ) as resp:
                raw = await resp.read()
                status, reason = resp.status, resp.reason or ""
                response_headers = CIMultiDict(resp.headers)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise BindingError(f'{method.title()} "{url}": {str(exc) or type(exc).__name__}') from exc
        if gunzip and response_headers.get("Content-Encoding", "").lower() == "gzip" and raw:
            raw = self._gunzip(raw, url)
            del response_headers["Content-Encoding"]
            response_headers.popall("Content-Length", None)
        elif self.max_body > 0:
            raw = raw[: self.max_body]
        out_metadata = {"statusCode": str(status), "status": f"{status} {reason}".strip()}
        for key in dict.fromkeys(canonical_header_key(k) for k in response_headers):
            out_metadata[key] = ", ".join(response_headers.getall(key))
        response = InvokeResponse(data=raw, metadata=out_metadata)
        if error_if_not_2xx and status // 100 != 2:
            raise BindingError(f"received status code {status}", response)
        return response

    def _gunzip(self, raw: bytes, url: str) -> bytes:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            if self.max_body > 0:
                return decompressor.decompress(raw, self.max_body)
            return decompressor.decompress(raw) + decompressor.flush()
        except zlib.error as exc:
            raise BindingError(f"reading the gzip response of {url}: {exc}") from exc
