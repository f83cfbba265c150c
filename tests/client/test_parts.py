"""The client's parts on their own: packet counting, the progress line, options and terms.

par_client is importable because tests/client/conftest.py puts client/ on sys.path.
"""

from __future__ import annotations

import pytest
from par_client.cli import parse, query_params
from par_client.pcapcount import PacketCounter
from par_client.progress import Progress

from pcapgen import ether, pcap_bytes, pcapng_bytes, tcp

RECORDS = [
    (1_700_000_000 * 10**9 + i * 1000, ether(tcp("10.0.0.1", 1, "10.0.0.2", 2, b"x" * i))) for i in range(50)
]


@pytest.mark.parametrize(
    "capture",
    [
        pcap_bytes(RECORDS),
        pcap_bytes(RECORDS, nanosecond=True, big_endian=True),
        pcapng_bytes([1], [(0, ts, f) for ts, f in RECORDS], big_endian=True),
    ],
    ids=["pcap", "pcap-ns-be", "pcapng"],
)
@pytest.mark.parametrize("chunk", [1, 7, 65536])
def test_packets_are_counted_in_any_chunking(capture, chunk):
    counter = PacketCounter()
    for offset in range(0, len(capture), chunk):
        counter.feed(capture[offset : offset + chunk])
    assert counter.packets == 50


def test_a_stream_that_is_no_capture_counts_nothing():
    counter = PacketCounter()
    counter.feed(b"<html>" + b"x" * 100)
    assert counter.packets is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Stream:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_the_progress_bar_shows_share_rate_and_time_left_and_is_erased():
    clock, stream = Clock(), Stream()
    progress = Progress(stream, 4 * 2**20, clock=clock)
    progress.update(2**20)
    assert stream.text == ""  # nothing for the first half second: short downloads stay quiet
    clock.now += 1.0
    progress.update(2**20)
    assert stream.text == "\r[############------------]  50% 2.0 MiB of ~4.0 MiB, ~0:01 left  2.0 MiB/s "
    progress.close()
    assert stream.text.endswith("\r")
    assert stream.text.rsplit("\r", 2)[-2].strip() == ""


def test_options_and_terms_are_the_apis_parameters():
    args = parse(
        [
            "pcap",
            "src_addr=10.0.0.1",
            "--dst_port",
            "443",
            "--community-id",
            "1:x=",
            "--start-time",
            "-15m",
            "--limit-packets",
            "10",
            "--format",
            "pcapng",
            "proto=tcp",
        ]
    )
    assert query_params(args, (("format", "", ""), ("limit_packets", "", "")), "1") == {
        "src_addr": "10.0.0.1",
        "proto": "tcp",
        "dst_port": "443",
        "community_id": "1:x=",
        "start_time": "-15m",
        "format": "pcapng",
        "limit_packets": "10",
        "node_id": "1",
    }


def test_an_option_wins_over_a_term_and_last_fills_the_window():
    args = parse(["flows", "node_id=2", "--node-id", "3", "--last", "1h"])
    assert query_params(args, (), None) == {"node_id": "3", "start_time": "-1h", "end_time": "now"}


def test_the_client_imports_only_the_standard_library_and_requests():
    import ast
    import sys

    from tests.client.conftest import CLIENT_DIR

    allowed = set(sys.stdlib_module_names) | {"requests", "par_client", "__future__"}
    for path in (CLIENT_DIR / "par_client").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
