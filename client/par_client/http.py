"""Talking to the collector: the key in a header, the API's errors as ParErrors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from par_client import __version__
from par_client.config import Settings
from par_client.errors import ApiError, CutShort, ParError, Unreachable

CONNECT_TIMEOUT = 10.0
CHUNK = 64 * 1024


class Collector:
    """One collector, reached with one key."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Api-Key {settings.api_key}"
        self.session.headers["User-Agent"] = f"par-client/{__version__}"
        self.session.verify = settings.ca_bundle or settings.verify

    def url(self, path: str) -> str:
        return f"{self.settings.url}/{path.lstrip('/')}"

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        with self.request(path, params) as response:
            try:
                return response.json()
            except ValueError:
                raise ParError(f"{path}: the answer is not JSON ({describe(response)})", 3)

    @contextmanager
    def request(
        self, path: str, params: dict[str, str] | None = None, record: bytes | None = None
    ) -> Iterator[requests.Response]:
        """A streamed 2xx answer; any other status is raised as the API's error.

        With ``record`` (one Suricata or Zeek record, JSON) the request is a POST of it.
        """
        try:
            response = self.session.request(
                "GET" if record is None else "POST",
                self.url(path),
                params=params,
                data=record,
                headers=None if record is None else {"Content-Type": "application/json"},
                stream=True,
                timeout=(CONNECT_TIMEOUT, self.settings.timeout),
            )
        except requests.exceptions.SSLError as exc:
            raise Unreachable(f"TLS failed with {self.settings.url}: {reason(exc)}")
        except requests.Timeout:
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


def api_error(response: requests.Response) -> ApiError:
    """The API's ``{"error": ...}`` message, or what the answer was if it is not the API's."""
    try:
        body = response.content[:65536]
    except requests.RequestException:
        body = b""
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
