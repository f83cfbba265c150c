"""Record times kept to the nanosecond by a real node (gunicorn), whatever precision each file has."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import requests

import pcapgen as g
from engine.formats import open_capture
from engine.index import build_index
from node.store import hour_dir
from tests.engine.conftest import pcap_records
from tests.servers import gunicorn

pytestmark = pytest.mark.slow

NS = 1_000_000_000
T0_S = 1_700_000_000
A, B = "10.0.0.1", "10.0.0.2"
PACKETS = 5


def frame(tag: bytes) -> bytes:
    return g.ether(g.udp(A, 1000, B, 53, tag * 40))


def times(first_s: int) -> list[int]:
    """A packet a millisecond apart, each with a nanosecond digit no microsecond file can hold."""
    return [first_s * NS + i * 1_000_000 + 302_001 for i in range(PACKETS)]


def pcapng_declaring_late(first_s: int, linktype: int, wrap) -> bytes:
    """A pcapng whose first packet is on a microsecond interface; a nanosecond one of ``linktype`` is declared after it.

    As dumpcap writes when an interface is added while capturing: the answer's precision and
    link types cannot be read from the blocks before the first packet.
    """
    order = "<"
    head = g.pcapng_bytes([g.Interface(tsresol=6)], [(0, first_s * NS, frame(b"u"))])
    late = (
        struct.pack(order + "HHI", linktype, 0, 0) + g._option(order, 9, b"\x09") + g._option(order, 0, b"")
    )
    blocks = [g._block(order, 1, late)]
    for ts in times(first_s + 1):
        data = wrap(g.udp(A, 1000, B, 53, b"n" * 40))
        body = struct.pack(order + "IIIII", 1, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data
        blocks.append(g._block(order, 6, body + b"\0" * (-len(data) % 4)))
    return head + b"".join(blocks)


def node_env(base: Path) -> dict[str, str]:
    """Filed and indexed: a microsecond pcap at T0 and a nanosecond one at T0+60. Live (no index),
    each alone in its own minute: pcapngs declaring a nanosecond interface after their first packet."""
    capture, filed = base / "capture", base / "filed"
    capture.mkdir(parents=True)
    hour = hour_dir(filed, T0_S, utc=True)
    hour.mkdir(parents=True)
    g.write_pcap(hour / f"pcap.{T0_S}", [(ts, frame(b"u")) for ts in times(T0_S)])
    g.write_pcap(hour / f"pcap.{T0_S + 60}", [(ts, frame(b"n")) for ts in times(T0_S + 60)], nanosecond=True)
    for path in hour.iterdir():
        build_index(path)
    for epoch, linktype, wrap in ((T0_S + 300, 1, g.ether), (T0_S + 600, 113, g.sll)):
        live = capture / f"pcap.{epoch}"
        live.write_bytes(pcapng_declaring_late(epoch, linktype, wrap))
        os.utime(live, (epoch + 2, epoch + 2))
    return {
        "PAR_DATA_DIR": str(base),
        "PAR_CAPTURE_DIR": str(capture),
        "PAR_FILER_DIR": str(filed),
        "DATABASE_URL": f"sqlite:///{base / 'db.sqlite3'}",
    }


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with gunicorn("node", node_env(tmp_path_factory.mktemp("precision"))) as server:
        yield server


def window(start_s: int, seconds: int = 120) -> dict[str, str]:
    return {"src_addr": A, "dst_addr": B, "start_time": str(start_s), "end_time": str(start_s + seconds)}


def answer_times(content: bytes, tmp_path: Path) -> list[int]:
    path = tmp_path / "answer"
    path.write_bytes(content)
    with open_capture(path) as capture:
        return [record.ts_ns for record in capture]


def test_files_of_both_precisions_are_answered_to_the_nanosecond(node):
    answer = requests.get(f"{node.url}/data.pcap", window(T0_S), timeout=30)
    assert answer.status_code == 200
    header, records = pcap_records(answer.content)
    assert header["nanosecond"]
    got = [secs * NS + frac for secs, frac, _, _ in records]
    # The microsecond file's times, as written (302 001 ns kept as 302 us), and the nanosecond file's exact.
    assert got == [ts // 1000 * 1000 for ts in times(T0_S)] + times(T0_S + 60)


def test_an_interface_declared_after_the_first_packet_keeps_its_nanoseconds(node, tmp_path):
    answer = requests.get(f"{node.url}/data.pcap", window(T0_S + 300, 60), timeout=30)
    assert answer.status_code == 200
    header, records = pcap_records(answer.content)
    assert header["nanosecond"]
    assert [secs * NS + frac for secs, frac, _, _ in records] == [(T0_S + 300) * NS, *times(T0_S + 301)]


def test_an_interface_of_another_link_type_declared_late_makes_a_whole_pcapng(node, tmp_path):
    answer = requests.get(f"{node.url}/data.pcap", window(T0_S + 600, 60), timeout=30)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/x-pcapng"
    assert answer_times(answer.content, tmp_path) == [(T0_S + 600) * NS, *times(T0_S + 601)]
    assert "failed" not in node.log()


@pytest.mark.parametrize("start_s", [T0_S, T0_S + 300, T0_S + 600])
def test_flows_give_first_and_last_to_the_ns_whatever_the_files_precision(node, start_s):
    listing = requests.get(f"{node.url}/flows", window(start_s), timeout=30)
    assert listing.status_code == 200
    (row,) = listing.json()["flows"]
    assert row["last"].endswith(".004302001Z")  # the last packet: nanosecond file or interface
    assert row["packets"] == (2 * PACKETS if start_s == T0_S else PACKETS + 1)
