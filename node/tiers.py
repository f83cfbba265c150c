"""Moving filed captures between tiers: compressed in place, archived to S3-compatible object storage.

Each move is the filer's recipe (write the new copy, make it durable, only then remove the old one),
so ``kill -9`` at any moment leaves every capture readable from one place at least, and a rerun
finishes what was begun (docs/storage.md "Crash safety"):

- **compress** (``manage.py compress``, a ``runfiler --loop`` pass): ``<name>`` is written to
  ``<name>.zst`` (temporary dot-name, fsync, rename), then ``<name>`` is removed. A rerun finding both
  (the same capture, by its index's fingerprint) removes ``<name>``.
- **archive** (``manage.py archive``, a ``runfiler --loop`` pass when ``PAR_ARCHIVE_URL`` is set): the
  capture (``<name>.zst`` or ``<name>``) is uploaded under ``<prefix>/<path below FILER_DIR>`` unless
  the archive already holds it (same size and sha256), then verified (a HEAD: size, our sha256, the
  ETag as MD5), then ``<name>.archived`` is written (the object's key, size, sha256 and the capture's
  fingerprint), and only then the local copy removed. A rerun finding a record and a local copy checks
  the object again before removing the copy; a record whose object is not right is removed and the
  capture archived again.
- **archive retention** (``PAR_ARCHIVE_MAX_AGE`` hours): an archived capture that old loses its object,
  then its record and index.

Every pass holds the filer tree lock, so it never runs beside a filing pass, retention or reindex.
Steps named with ``crash_point()`` are where the crash tests kill it (node/faults.py).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import durable
from engine.compress import compress_capture, compressed_path
from engine.durable import fsync_dir
from engine.formats.archived import ArchiveRecord, ArchiveUnavailable, is_missing, s3_client, unavailable
from engine.formats.seekable import LEVEL, SeekableZstd
from engine.formats.source import ARCHIVED_SUFFIX, ZSTD_SUFFIX, LocalFile, capture_name, tier_of
from engine.index import index_path
from engine.index.opening import capture_fingerprint
from engine.index.summary import SUMMARY_SUFFIX
from node import retention, store
from node.faults import crash_point

log = logging.getLogger("node.filer")
_HASH_CHUNK = 1 << 20
HEAD_BYTES = 4096  # the capture's first bytes an archive record keeps (a pcap header, pcapng's first blocks)
HEAD_TABLE_MAX = 1 << 20  # a longer seek table stays in the object only


@dataclass(frozen=True)
class ArchiveOptions:
    bucket: str
    prefix: str  # the keys' prefix, "" or ending in "/"
    endpoint: str = ""
    after_hours: float = 24.0
    max_age_hours: float = 0.0  # 0: archived captures are kept

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_archive_url(url: str) -> tuple[str, str]:
    """(bucket, key prefix) of ``s3://bucket/prefix``; ValueError for anything else."""
    if not url.startswith("s3://"):
        raise ValueError(f"an archive URL is s3://bucket/prefix, not {url!r}")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"an archive URL names its bucket: {url!r}")
    prefix = prefix.strip("/")
    return bucket, prefix + "/" if prefix else ""


def archive_options(*, in_filer: bool = False) -> ArchiveOptions | None:
    """The archive of the settings (``PAR_ARCHIVE_*``); None when ``PAR_ARCHIVE_URL`` is empty.

    ``in_filer``: for runfiler's passes, None too when ``PAR_ARCHIVE_IN_FILER`` is false (the
    archive pass runs as its own service, ``manage.py archive``, with the network the filer lacks).
    """
    from django.conf import settings

    if not settings.PAR_ARCHIVE_URL or (in_filer and not settings.PAR_ARCHIVE_IN_FILER):
        return None
    bucket, prefix = parse_archive_url(settings.PAR_ARCHIVE_URL)
    return ArchiveOptions(
        bucket,
        prefix,
        settings.PAR_ARCHIVE_ENDPOINT,
        settings.PAR_ARCHIVE_AFTER,
        settings.PAR_ARCHIVE_MAX_AGE,
    )


@dataclass
class TierSummary:
    compressed: int = 0
    raw_bytes: int = 0
    compressed_bytes: int = 0
    archived: int = 0
    archived_bytes: int = 0
    expired: int = 0
    errors: list[str] = field(default_factory=list)
    backlog: int = 0  # captures old enough to archive and not archived yet, after the pass
    archive_pass: bool = False  # the archive was visited (backlog counted)

    def line(self) -> str:
        parts = []
        if self.compressed:
            parts.append(
                f"compressed {self.compressed} files, {self.raw_bytes} -> {self.compressed_bytes} bytes"
            )
        if self.archived or self.backlog:
            parts.append(
                f"archived {self.archived} files ({self.archived_bytes} bytes), {self.backlog} waiting"
            )
        if self.expired:
            parts.append(f"deleted {self.expired} archived files past their age")
        if self.errors:
            parts.append(f"{len(self.errors)} failed: {', '.join(self.errors)}")
        return "; ".join(parts) or "nothing to compress or archive"


def _filed_captures(filer_dir: Path, prefix: str) -> list[tuple[int, Path]]:
    """(epoch, path) of every filed capture, in any tier, with both copies of one cut short between tiers."""
    found: list[tuple[int, Path]] = []
    for hour in retention.hour_dirs(filer_dir):
        try:
            entries = list(os.scandir(hour.path))
        except FileNotFoundError:
            continue
        for entry in entries:
            epoch = store.name_epoch(capture_name(entry.name), prefix)
            if epoch is not None and entry.is_file(follow_symlinks=False):
                found.append((epoch, Path(entry.path)))
    found.sort(key=lambda item: (item[0], item[1].name))
    return found


def _cutoff(hours: float | None, now: float | None) -> float:
    return (time.time() if now is None else now) - (hours or 0.0) * 3600


# ---------------------------------------------------------------- compress


def compress_tree(
    filer_dir: Path,
    prefix: str,
    *,
    older_than_hours: float | None = None,
    level: int = LEVEL,
    stop: threading.Event | None = None,
    now: float | None = None,
) -> TierSummary:
    """Compress every filed raw capture older than ``older_than_hours`` (by its name's epoch), in place."""
    summary = TierSummary()
    cutoff = _cutoff(older_than_hours, now)
    cleaned: set[Path] = set()
    for epoch, path in _filed_captures(filer_dir, prefix):
        if stop is not None and stop.is_set():
            break
        if tier_of(path) != "raw" or epoch > cutoff:
            continue
        try:
            _compress_one(path, prefix, level, summary, cleaned)
        except Exception as exc:  # one file's trouble must not stop the pass
            log.error("Cannot compress %s: %s", path, exc)
            summary.errors.append(path.name)
    return summary


def _compress_one(path: Path, prefix: str, level: int, summary: TierSummary, cleaned: set[Path]) -> None:
    from node.filer import remove_stale_temps

    if path.parent not in cleaned:
        remove_stale_temps(path.parent, prefix)
        cleaned.add(path.parent)
    zst = compressed_path(path)
    if zst.exists():
        # A crash between placing the compressed copy and removing the capture: the copy is whole.
        if capture_fingerprint(zst) != capture_fingerprint(path):
            raise ValueError(f"{zst} exists with other content; {path} is left as it is")
        log.info("%s is already compressed (the last run stopped before removing it); removing it", path)
    else:
        done = compress_capture(path, zst, level=level)
        summary.raw_bytes += done.raw_bytes
        summary.compressed_bytes += done.compressed_bytes
        log.info("Compressed %s: %d -> %d bytes", path, done.raw_bytes, done.compressed_bytes)
    crash_point("compressed")
    path.unlink()
    fsync_dir(path.parent)
    summary.compressed += 1


# ---------------------------------------------------------------- archive


def _hashes(path: Path) -> tuple[int, str, str]:
    """(size, sha256 hex, md5 hex) of the file at ``path``, read once."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest(), md5.hexdigest()


def _object_is(client: Any, bucket: str, key: str, size: int, sha256: str, md5: str | None = None) -> bool:
    """True when the archive holds ``key`` with this size and sha256 (and ETag, when ``md5`` is given)."""
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if is_missing(exc):
            return False
        raise unavailable(exc, f"s3://{bucket}/{key}") from None
    if int(head.get("ContentLength", -1)) != size or head.get("Metadata", {}).get("sha256") != sha256:
        return False
    etag = str(head.get("ETag", "")).strip('"')
    return md5 is None or "-" in etag or etag == md5


def archive_key(options: ArchiveOptions, filer_dir: Path, path: Path) -> str:
    """The object key of the capture at ``path``: the prefix, then its path below FILER_DIR."""
    return options.prefix + path.relative_to(filer_dir).as_posix()


def archive_tree(
    filer_dir: Path,
    prefix: str,
    options: ArchiveOptions,
    *,
    older_than_hours: float | None = None,
    stop: threading.Event | None = None,
    now: float | None = None,
    client: Any = None,
) -> TierSummary:
    """Archive every filed capture older than ``older_than_hours`` (default ``options.after_hours``),
    then delete archived captures older than ``options.max_age_hours`` (when set)."""
    summary = TierSummary(archive_pass=True)
    client = client if client is not None else s3_client(_config(options))
    hours = options.after_hours if older_than_hours is None else older_than_hours
    cutoff = _cutoff(hours, now)
    from node.filer import remove_stale_temps

    found = _filed_captures(filer_dir, prefix)
    by_name: dict[str, list[Path]] = {}
    for epoch, path in found:
        if epoch <= cutoff:
            by_name.setdefault(capture_name(path.name), []).append(path)
    # A record being written when a run was killed is left as its temporary name: the rerun's.
    for directory in {path.parent for paths in by_name.values() for path in paths}:
        remove_stale_temps(directory, prefix)
    unreachable = False
    for paths in by_name.values():
        local = [p for p in paths if tier_of(p) != "archived"]
        if not local:
            continue
        if unreachable or (stop is not None and stop.is_set()):
            summary.backlog += 1
            continue
        record = next((p for p in paths if tier_of(p) == "archived"), None)
        try:
            _archive_one(filer_dir, options, client, local, record, summary)
        except ArchiveUnavailable as exc:
            log.error("Cannot archive %s: %s", local[0], exc)
            summary.errors.append(local[0].name)
            summary.backlog += 1
            unreachable = True  # the rest waits for the next pass
        except Exception as exc:
            log.error("Cannot archive %s: %s", local[0], exc)
            summary.errors.append(local[0].name)
            summary.backlog += 1
    if options.max_age_hours and not unreachable:
        try:
            _expire(filer_dir, prefix, options, client, summary, now)
        except Exception as exc:
            log.error("Cannot delete archived captures past their age: %s", exc)
            summary.errors.append("retention")
    return summary


def _config(options: ArchiveOptions):
    from engine.formats.archived import ArchiveConfig

    return ArchiveConfig(options.endpoint, os.environ.get("AWS_REGION", ""))


def _archive_one(
    filer_dir: Path,
    options: ArchiveOptions,
    client: Any,
    local: list[Path],
    record_path: Path | None,
    summary: TierSummary,
) -> None:
    """Archive one capture (``local``: its copies on disk, compressed first), or finish archiving it."""
    local.sort(key=lambda p: tier_of(p) != "compressed")  # the compressed copy is the one uploaded
    if record_path is not None:
        # A crash between writing the record and removing the local copy: check the object again.
        record = ArchiveRecord.load(record_path)
        if _object_is(client, record.bucket, record.key, record.size, record.sha256):
            _remove_local(local)
            summary.archived += 1
            return
        log.warning("%s names an object that is not right; archiving %s again", record_path, local[0])
        record_path.unlink()
        fsync_dir(record_path.parent)
    path = local[0]
    size, sha256, md5 = _hashes(path)
    key = archive_key(options, filer_dir, path)
    url = f"s3://{options.bucket}/{key}"
    if not _object_is(client, options.bucket, key, size, sha256, md5):
        crash_point("uploading")
        try:
            with open(path, "rb") as body:
                client.put_object(
                    Bucket=options.bucket, Key=key, Body=body, ContentLength=size, Metadata={"sha256": sha256}
                )
        except Exception as exc:
            raise unavailable(exc, url) from None
        crash_point("uploaded")
        if not _object_is(client, options.bucket, key, size, sha256, md5):
            raise ArchiveUnavailable(
                f"the archive {url} did not keep what was uploaded (size or checksum differ)"
            )
    capture_size, digest = capture_fingerprint(path)
    tail, head = _kept_locally(path)
    record = ArchiveRecord(
        bucket=options.bucket,
        key=key,
        size=size,
        sha256=sha256,
        capture_size=capture_size,
        capture_digest=digest.hex(),
        compressed=path.name.endswith(ZSTD_SUFFIX),
        archived_at=int(time.time()),
        tail=base64.b64encode(tail).decode(),
        head=base64.b64encode(head).decode(),
    )
    record_file = Path(capture_name(path) + ARCHIVED_SUFFIX)
    with durable.atomic_write(record_file) as out:
        out.write(record.dumps())
    crash_point("recorded")
    _remove_local(local)
    summary.archived += 1
    summary.archived_bytes += size
    log.info("Archived %s as %s (%d bytes)", path, url, size)


def _kept_locally(path: Path) -> tuple[bytes, bytes]:
    """(the object's end holding its seek table, the capture's first bytes) for the record: what every
    query of an archived capture reads, kept beside its index (empty for an object stored raw)."""
    if not path.name.endswith(ZSTD_SUFFIX):
        return b"", b""
    source = LocalFile(path)
    try:
        size = source.size()
        footer = source.read(size - 9, 9)
        frames = int.from_bytes(footer[:4], "little")
        table_size = 8 + frames * (12 if footer[4] & 0x80 else 8) + 9
        if table_size > HEAD_TABLE_MAX:
            return b"", b""
        tail = source.read(size - table_size, table_size)
        zstd = SeekableZstd(source)
        head = zstd.read(0, HEAD_BYTES)
        return tail, head
    finally:
        source.close()


def _remove_local(local: list[Path]) -> None:
    for path in local:
        path.unlink(missing_ok=True)
        crash_point("removing")
    fsync_dir(local[0].parent)


def _expire(
    filer_dir: Path,
    prefix: str,
    options: ArchiveOptions,
    client: Any,
    summary: TierSummary,
    now: float | None,
) -> None:
    """Delete archived captures older than ``options.max_age_hours``: the object, then record and index."""
    cutoff = _cutoff(options.max_age_hours, now)
    touched: set[Path] = set()
    try:
        for epoch, path in _filed_captures(filer_dir, prefix):
            if tier_of(path) != "archived" or epoch > cutoff:
                continue
            record = ArchiveRecord.load(path)
            try:
                client.delete_object(Bucket=record.bucket, Key=record.key)
            except Exception as exc:
                raise unavailable(exc, record.url) from None
            crash_point("expiring")
            path.unlink()
            index_path(path).unlink(missing_ok=True)
            fsync_dir(path.parent)
            touched.add(path.parent)
            summary.expired += 1
            log.info("Deleted archived %s (%s): older than %g hours", path, record.url, options.max_age_hours)
    finally:
        # An hour local retention left for its archived captures goes with the last of them.
        for directory in sorted(touched):
            retention.refresh_hour_summary(directory, prefix)
            _remove_if_done(directory, filer_dir, prefix)


def _remove_if_done(directory: Path, filer_dir: Path, prefix: str) -> None:
    """Remove the hour directory ``directory`` when no capture is left in it (a summary of none goes too)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    if any(store.name_epoch(capture_name(name), prefix) is not None for name in names):
        return
    summary = f"{prefix}{SUMMARY_SUFFIX}"
    if names == [summary]:
        (directory / summary).unlink()
    retention.remove_empty_dirs(directory, filer_dir)


def archive_backlog(filer_dir: Path, prefix: str, options: ArchiveOptions, now: float | None = None) -> int:
    """Captures old enough to archive that are still local."""
    cutoff = _cutoff(options.after_hours, now)
    names = {
        capture_name(p.name)
        for epoch, p in _filed_captures(filer_dir, prefix)
        if epoch <= cutoff and tier_of(p) != "archived"
    }
    return len(names)
