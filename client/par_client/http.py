"""Talking to the collector: the key in a header, the API's errors as ParErrors."""

from __future__ import annotations

import json
import socket
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests

from par_client import __version__
from par_client.config import Settings
from par_client.errors import ApiError, CutShort, ParError, Unreachable

CONNECT_TIMEOUT = 10.0
CHUNK = 64 * 1024
ERROR_BODY_MAX = 65536  # of an error's body, read and unpacked: a gzip bomb costs no more than this


class Collector:
    """One collector, reached with one key."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Api-Key {settings.api_key}"
        self.session.headers["User-Agent"] = f"par-client/{__version__}"
        # Given with each request: requests lets REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE override a
        # session's own, so --cacert or the config's ca_bundle would be silently ignored.
        self.verify: bool | str = settings.ca_bundle or settings.verify

    def url(self, path: str) -> str:
        return f"{self.settings.url}/{path.lstrip('/')}"

    def get_json(self, path: str, params: dict[str, str] | None = None, method: str = "GET") -> Any:
        with self.request(path, params, method=method) as response:
            try:
                return response.json()
            except ValueError:
                raise ParError(f"{path}: the answer is not JSON ({describe(response)})", 3)

    @contextmanager
    def request(
        self,
        path: str,
        params: dict[str, str] | None = None,
        record: bytes | None = None,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
    ) -> Iterator[requests.Response]:
        """A streamed 2xx answer; any other status is raised as the API's error.

        With ``record`` (one Suricata or Zeek record, JSON) the request is a POST of it.
        """
        if record is not None:
            method = "POST"
            headers = {**(headers or {}), "Content-Type": "application/json"}
        try:
            response = self.session.request(
                method,
                self.url(path),
                params=params,
                data=record,
                headers=headers,
                stream=True,
                # The connect timeout bounds the TLS handshake too: never longer than --timeout.
                timeout=(min(CONNECT_TIMEOUT, self.settings.timeout), self.settings.timeout),
                verify=self.verify,
            )
        except requests.exceptions.SSLError as exc:
            raise Unreachable(f"TLS failed with {self.settings.url}: {reason(exc)}{self.plain_http_hint()}")
        except requests.Timeout:
            hint = self.plain_http_hint()
            if hint:  # the TLS handshake waited on a server that never speaks TLS
                raise Unreachable(f"TLS failed with {self.settings.url}: no TLS handshake{hint}")
            raise Unreachable(f"{self.settings.url} did not answer within {self.settings.timeout:g} s")
        except requests.ConnectionError as exc:
            raise Unreachable(f"cannot reach {self.settings.url}: {reason(exc)}")
        except requests.RequestException as exc:
            raise Unreachable(f"cannot ask {self.settings.url}: {exc}")
        try:
            if not 200 <= response.status_code < 300:
                raise api_error(response)
            yield response
        finally:
            response.close()

    def plain_http_hint(self) -> str:
        """``: the server answers plain HTTP (use http://...)`` when an https URL's server does."""
        parts = urlsplit(self.settings.url)
        try:
            port = parts.port or 443
        except ValueError:
            return ""
        if parts.scheme != "https" or not parts.hostname or not speaks_plain_http(parts.hostname, port):
            return ""
        return f": the server answers plain HTTP (use {parts._replace(scheme='http').geturl()})"


def speaks_plain_http(host: str, port: int) -> bool:
    """Whether ``host:port`` answers a plain HTTP request (asked within a few seconds)."""
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.sendall(f"HEAD / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            return sock.recv(5) == b"HTTP/"
    except OSError:
        return False


def read_error_body(response: requests.Response) -> bytes:
    """At most ERROR_BODY_MAX bytes of an error's body, unpacked without unpacking more."""
    try:
        raw = response.raw.read(ERROR_BODY_MAX, decode_content=False) or b""
    except Exception:  # urllib3's errors: cut, reset, read timeout
        return b""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
        try:
            return zlib.decompressobj(wbits).decompress(raw, ERROR_BODY_MAX)
        except zlib.error:
            return b""
    return raw if not encoding or encoding == "identity" else b""


def api_error(response: requests.Response) -> ApiError:
    """The API's ``{"error": ...}`` message, or what the answer was if it is not the API's."""
    body = read_error_body(response)
    message = None
    try:
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            message = data["error"]
    except ValueError:
        pass
    if message is None:
        message = f"HTTP {response.status_code} {response.reason or ''}".rstrip()
        text = body.decode("utf-8", "replace").strip()
        kind = response.headers.get("Content-Type", "")
        if text and "html" not in kind:
            message += f": {text[:200]}"
        elif text:
            message += " (an HTML page, not the API: is the URL the collector's?)"
    return ApiError(message, response.status_code)


def describe(response: requests.Response) -> str:
    return f"HTTP {response.status_code}, {response.headers.get('Content-Type') or 'no content type'}"


def reason(exc: Exception) -> str:
    """The innermost cause of a requests error, readable (not urllib3's object reprs)."""
    inner: BaseException = exc
    while True:
        nxt = getattr(inner, "reason", None) or inner.__cause__ or inner.__context__
        if not isinstance(nxt, BaseException) or nxt is inner:
            break
        inner = nxt
    text = str(inner)
    # urllib3 phrases it "<urllib3.connection.HTTPConnection object at 0x...>: Failed to ...".
    if ">: " in text:
        text = text.split(">: ", 1)[1]
    return text


def iter_body(response: requests.Response) -> Iterator[bytes]:
    """The body in chunks; a connection cut or stalled mid-answer is CutShort."""
    try:
        yield from response.iter_content(CHUNK)
    except requests.RequestException as exc:
        raise CutShort(f"the answer broke off: {reason(exc)}")
