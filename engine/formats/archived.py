"""Archived captures: the record left in the hour directory, and the object read back with ranged GETs.

When a capture moves to object storage, ``<name>.archived`` stays beside its index: a small JSON
record of the object (bucket, key, size, sha256) and of the capture it holds (its length and
content digest, as the index keeps them), so listing a window and ``/flows`` read nothing from the
archive. ``ObjectSource`` is the ``ByteSource`` of the object: each read is one ranged GET. The
record also keeps the object's end (its seek table) and the capture's first bytes (its file
header), so a small query's only request is for the frames holding its records. An
archived ``.zst`` object is read through ``engine.formats.seekable.SeekableZstd`` above it, which
asks for the frames an answer needs, nearby ones in one request.

The S3 client (boto3, imported only when an archive is read or written) is made once per process
for an endpoint; credentials come from the usual AWS variables and never appear in a message.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .capture import CaptureError
from .source import ARCHIVED_SUFFIX, ByteSource, register_opener

TAIL_BYTES = 1 << 16  # the object's end, fetched once: the seek table of most captures fits


class ArchiveUnavailable(OSError):
    """The archive cannot be reached (or refuses us): the message names the archive, never a credential."""


@dataclass(frozen=True)
class ArchiveRecord:
    """Where an archived capture lives, and what it holds."""

    bucket: str
    key: str
    size: int  # of the object
    sha256: str  # of the object, hex
    capture_size: int  # of the capture (decompressed)
    capture_digest: str  # the content digest its index keeps, hex
    compressed: bool  # the object is a zstd seekable file
    archived_at: int  # seconds since the epoch
    tail: str = ""  # base64: the object's end holding its seek table (compressed objects), read locally
    head: str = ""  # base64: the capture's first bytes (its file header), read locally

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def load(cls, path: str | os.PathLike) -> ArchiveRecord:
        """The record at ``path``; CaptureError when it cannot be read as one."""
        try:
            with open(path, "rb") as f:
                fields = json.loads(f.read())
            optional = {"tail", "head"}
            return cls(
                **{
                    name: fields[name]
                    for name in cls.__dataclass_fields__
                    if name in fields or name not in optional
                }
            )
        except OSError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise CaptureError(os.fspath(path), 0, f"not an archive record ({exc})") from None

    def dumps(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode() + b"\n"


# ---------------------------------------------------------------- the client


@dataclass(frozen=True)
class ArchiveConfig:
    endpoint: str = ""  # empty: AWS's own
    region: str = ""


_CONFIG = ArchiveConfig()
_CLIENTS: dict[ArchiveConfig, Any] = {}
_CLIENTS_LOCK = threading.Lock()
# Told of every archive request a read makes: (bytes fetched, True) or (0, False) for a failure.
_ON_FETCH: Callable[[int, bool], None] | None = None


def configure(
    endpoint: str = "", region: str = "", on_fetch: Callable[[int, bool], None] | None = None
) -> None:
    """Read archived captures from the S3 endpoint ``endpoint`` (and register their opener).

    ``on_fetch(bytes, ok)`` is called after each request a read makes (the node's metrics). The
    clients and the connection pool are made anew on next use, so they take the environment as it
    is now (credentials, ``AWS_CA_BUNDLE``).
    """
    global _CONFIG, _ON_FETCH
    _CONFIG = ArchiveConfig(endpoint, region)
    _forget_clients()
    if on_fetch is not None:
        _ON_FETCH = on_fetch
    register_opener(ARCHIVED_SUFFIX, open_archived)


def s3_client(config: ArchiveConfig | None = None) -> Any:
    """The process's S3 client for ``config`` (the configured one by default), made once."""
    config = config or _CONFIG
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(config)
        if client is None:
            import boto3
            from botocore.config import Config

            # botocore's and urllib3's debug lines carry request headers (the access key's id):
            # never more than warnings from them, whatever the root logger's level.
            # urllib3's warnings may name the (signed) URL of a query's GET: errors only from it.
            for name in ("boto3", "botocore", "s3transfer"):
                logging.getLogger(name).setLevel(logging.WARNING)
            logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)

            client = boto3.session.Session().client(
                "s3",
                endpoint_url=config.endpoint or None,
                region_name=config.region or os.environ.get("AWS_REGION") or "us-east-1",
                config=Config(
                    retries={"max_attempts": 2, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=30,
                    max_pool_connections=32,
                    s3={"addressing_style": "path"},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
            _CLIENTS[config] = client
        return client


def unavailable(exc: BaseException, where: str) -> ArchiveUnavailable:
    """The error a failed archive request becomes: the archive named, the cause's class, no secret."""
    return ArchiveUnavailable(f"the archive {where} cannot be reached ({type(exc).__name__})")


def is_missing(exc: BaseException) -> bool:
    """True for an S3 error saying the object (or range) is not there."""
    response = getattr(exc, "response", None)
    code = str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
    return code in ("NoSuchKey", "404", "NotFound", "InvalidRange", "416")


class ObjectSource:
    """An archived object, read with ranged GETs (a ``ByteSource``)."""

    def __init__(self, record: ArchiveRecord, name: str, client: Any = None):
        self.record, self.path = record, name
        # a client of the caller's is asked through boto3; the process's own through _ranged_get
        self._lean = client is None
        self.client = client if client is not None else s3_client()
        self._tail: bytes | None = None
        self._tail_start = max(0, record.size - TAIL_BYTES)
        if record.tail:
            self._tail = base64.b64decode(record.tail)
            self._tail_start = record.size - len(self._tail)
        self._closed = False
        self.requests = 0
        self.bytes_fetched = 0

    @property
    def name(self) -> str:
        return self.path

    def size(self) -> int:
        return self.record.size

    def identity(self) -> tuple:
        return (self.record.bucket, self.record.key, self.record.size, self.record.sha256)

    def fileno(self) -> int | None:
        return None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._tail, self._closed = None, True

    def read(self, offset: int, size: int) -> bytes:
        total = self.record.size
        end = min(offset + size, total)
        if offset >= end:
            return b""
        tail_start = self._tail_start
        if offset >= tail_start:
            if self._tail is None:
                self._tail = self._get(tail_start, total)
            return self._tail[offset - tail_start : end - tail_start]
        return self._get(offset, end)

    def _get(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object: one ranged GET; a shorter object is damage."""
        record = self.record
        self.requests += 1
        try:
            if self._lean:
                data = _ranged_get(self.client, record, start, end)
            else:
                answer = self.client.get_object(
                    Bucket=record.bucket, Key=record.key, Range=f"bytes={start}-{end - 1}"
                )
                data = answer["Body"].read()
        except Exception as exc:
            if _ON_FETCH is not None:
                _ON_FETCH(0, False)
            if is_missing(exc):
                raise CaptureError(
                    self.path, start, f"the archived object {record.url} is missing or cut short"
                ) from None
            raise unavailable(exc, record.url) from None
        self.bytes_fetched += len(data)
        if _ON_FETCH is not None:
            _ON_FETCH(len(data), True)
        if len(data) != end - start:
            raise CaptureError(self.path, start + len(data), f"the archived object {record.url} is cut short")
        return data


# ---------------------------------------------------------------- the ranged GET of a query
#
# A small query's whole cost beside its local work is one GET. boto3 spends 2-4 ms of CPU on each
# on a quiet machine, several times that on a busy one (its event hooks, signing, parsing the
# answer's headers into a dict), as much as or more than a loopback server's own answer. A query's GET therefore goes out as a plain HTTP request on the process's
# keep-alive pool (urllib3, which botocore itself sends with), to a URL boto3 signed for the object
# (a presigned GET, kept for SIGNED_FOR seconds and signed again before it expires; the Range
# header is not part of the signature). The URL carries the signature and the access key's id:
# it is never logged, and an error names the archive's s3:// URL and the error's class only.

SIGNED_FOR = 3600  # seconds a signed URL is valid
SIGNED_REUSE = SIGNED_FOR - 600  # signed again this long after it was made
_SIGNED: dict[tuple[int, str, str], tuple[float, str]] = {}
_POOL: Any = None


class _HTTPStatus(Exception):
    """An S3 answer other than the bytes asked for (its ``response`` as botocore's errors carry it)."""

    def __init__(self, status: int):
        super().__init__(status)
        self.response = {"Error": {"Code": str(status)}}


def _signed_url(client: Any, record: ArchiveRecord) -> str:
    import time

    key = (id(client), record.bucket, record.key)
    now = time.monotonic()
    found = _SIGNED.get(key)
    if found is not None and now - found[0] < SIGNED_REUSE:
        return found[1]
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": record.bucket, "Key": record.key}, ExpiresIn=SIGNED_FOR
    )
    with _CLIENTS_LOCK:
        if len(_SIGNED) > 4096:
            _SIGNED.clear()
        _SIGNED[key] = (now, url)
    return url


def _pool() -> Any:
    global _POOL
    with _CLIENTS_LOCK:
        if _POOL is None:
            import urllib3

            # the CA bundle boto3 would verify the endpoint with (AWS_CA_BUNDLE: a private S3's CA)
            bundle = os.environ.get("AWS_CA_BUNDLE") or None
            _POOL = urllib3.PoolManager(
                maxsize=32,
                retries=False,
                timeout=urllib3.Timeout(connect=5, read=30),
                ca_certs=bundle,
            )
        return _POOL


def _forget_clients() -> None:
    """Make the S3 clients, the signed URLs and the connection pool anew on next use."""
    global _POOL
    with _CLIENTS_LOCK:
        _CLIENTS.clear()
        _SIGNED.clear()
        if _POOL is not None:
            _POOL.clear()
        _POOL = None


def _ranged_get(client: Any, record: ArchiveRecord, start: int, end: int) -> bytes:
    """Bytes [start, end) of ``record``'s object, one signed GET on a kept-alive connection."""
    import urllib3

    url = _signed_url(client, record)
    headers = {"Range": f"bytes={start}-{end - 1}"}
    try:
        answer = _pool().request("GET", url, headers=headers)
    except urllib3.exceptions.ProtocolError:
        # a kept-alive connection the server had closed: once more on a new one (a server out of
        # reach is not asked twice)
        answer = _pool().request("GET", url, headers=headers)
    if answer.status == 403:
        # credentials that changed (a rotated role's) since the URL was signed: signed again, once
        _SIGNED.pop((id(client), record.bucket, record.key), None)
        answer = _pool().request("GET", _signed_url(client, record), headers=headers)
    status = answer.status
    if status == 206:
        return answer.data
    if status == 200 and start == 0:
        return answer.data[: end - start]  # a server that ignored the range: the whole object
    raise _HTTPStatus(status)  # 404 and 416: the object is missing or shorter (damage); else unreachable


def open_archived(path: str) -> ByteSource:
    """The byte source of the archived capture whose record is at ``path``."""
    record = ArchiveRecord.load(path)
    source = ObjectSource(record, path)
    if not record.compressed:
        return source
    from .seekable import SeekableZstd

    # frames fetched from the archive stay in the process's cache for the next query of the object
    return SeekableZstd(source, head=base64.b64decode(record.head), shared=True)
