"""Capture files: classic pcap (micro/nanosecond, either byte order) and pcapng, read and written.

``open_capture`` reads the magic number and picks the reader from ``READERS``:
``engine.formats.pcap`` or ``engine.formats.pcapng``; what a read yields and how it fails is in
``engine.formats.capture``, reading at known offsets in ``engine.formats.access``, writing
in ``engine.formats.writer`` (every pcap and pcapng structure the project packs), reading a
stream fed chunk by chunk in ``engine.formats.stream`` (the merge's). Every read of a file goes
through a byte source (``engine.formats.source``: a local file, a zstd seekable file
(``engine.formats.seekable``), an archived object (``engine.formats.archived``)).
"""

from __future__ import annotations

from pathlib import Path

from . import pcap, pcapng
from .capture import (
    MAX_CAPLEN,
    MAX_TS_NS,
    Capture,
    CaptureError,
    CaptureTruncated,
    IncompleteHeader,
    Record,
    check_caplen,
    check_caplens,
    check_time,
    check_times,
)
from .pcap import FILE_HEADER_SIZE as PCAP_HEADER_SIZE
from .pcap import RECORD_HEADER_SIZE, PcapCapture
from .pcapng import PcapngCapture
from .source import ByteSource, LocalFile, capture_name, open_source, tier_of
from .writer import CaptureWriter, pcap_file_header, pcap_record_bytes

READERS: dict[bytes, type[Capture]] = {magic: PcapCapture for magic in pcap.MAGICS}
READERS[pcapng.MAGIC] = PcapngCapture


def open_capture(path: str | Path) -> Capture:
    """Open a capture file; use it as a context manager and iterate it for records."""
    source = open_source(path)  # handed to the Capture, which closes it
    try:
        magic = source.read(0, 4)
        if len(magic) < 4:
            raise IncompleteHeader(path, 0, "no file header yet")
        reader = READERS.get(magic)
        if reader is None:
            raise CaptureError(path, 0, f"not a pcap or pcapng file (magic {magic.hex()})")
    except BaseException:
        source.close()
        raise
    return reader(path, source)


__all__ = [
    "MAX_CAPLEN",
    "MAX_TS_NS",
    "PCAP_HEADER_SIZE",
    "READERS",
    "RECORD_HEADER_SIZE",
    "ByteSource",
    "Capture",
    "CaptureError",
    "CaptureTruncated",
    "CaptureWriter",
    "IncompleteHeader",
    "LocalFile",
    "PcapCapture",
    "PcapngCapture",
    "Record",
    "capture_name",
    "check_caplen",
    "check_caplens",
    "check_time",
    "check_times",
    "open_capture",
    "open_source",
    "pcap_file_header",
    "pcap_record_bytes",
    "tier_of",
]
