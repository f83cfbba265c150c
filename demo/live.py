"""The demo's live capture: generated traffic appended as time passes to a rotating ``pcap.<epoch>``,
as a capture tool writes it, so "Last 15 min" finds data however long the demo runs.

Each file covers ``seconds`` of a small office's traffic (pcapgen.sessions), its records written
when their time has come; the next file starts when it ends, and the real filer's loop files the
finished ones.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pcapgen import pcap_header, pcap_record
from pcapgen.sessions import session_traffic


def write_live(capture_dir: Path, start: int, seconds: int, stop: threading.Event) -> None:
    """Write ``pcap.<epoch>`` files of ``seconds`` each from ``start`` on, in real time, until ``stop``."""
    while not stop.is_set():
        records, _ = session_traffic(start * 10**9, seconds, seed=start)
        with open(capture_dir / f"pcap.{start}", "wb") as out:
            out.write(pcap_header())
            out.flush()
            for ts, frame in sorted(records):
                while ts > time.time_ns():  # a record is written once its time has come
                    if stop.wait(min(1.0, (ts - time.time_ns()) / 1e9)):
                        return
                out.write(pcap_record(ts, frame))  # a whole record at a time
                out.flush()
        start += seconds
        while time.time() < start and not stop.wait(0.2):
            pass


def start_live_capture(capture_dir: Path, start: int, seconds: int) -> threading.Event:
    """Run ``write_live`` in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(
        target=write_live, args=(capture_dir, start, seconds, stop), name="live-capture", daemon=True
    ).start()
    return stop
