"""Damaged and hostile bytes: readers and the index reader fail with CaptureError or scan, nothing else."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcapgen as g
from engine import index as index_module
from engine.formats import CaptureError, open_capture
from engine.index import FlowIndex, build_index, index_path
from tests.engine.conftest import T0, answer, flow, pcap_records

A, B = "10.0.0.1", "10.0.0.2"
PACKET = g.udp(A, 1, B, 2, b"hello")
SEEDS = [
    g.pcap_bytes([(T0 + i * 1000, g.ether(PACKET, vlans=(7,) * (i % 3))) for i in range(12)]),
    g.pcap_bytes(
        [(T0 + i * 1000, g.sll(PACKET)) for i in range(12)], linktype=113, big_endian=True, nanosecond=True
    ),
    g.pcapng_bytes(
        [g.Interface(1, 9), g.Interface(113, 0x80 | 20)],
        [(i % 2, T0 + i * 1000, g.sll(PACKET) if i % 2 else g.ether(PACKET)) for i in range(12)],
    ),
    g.pcapng_bytes([1], [(None, None, g.ether(PACKET))] * 4, big_endian=True),
]
# Values that make lengths, counts and offsets extreme wherever they land.
WORDS = [b"\xff\xff\xff\xff", b"\0\0\0\0", b"\xff\xff\xff\x7f", b"\0\0\0\x80", b"\x0c\0\0\0"]


@st.composite
def mutations(draw, size: int, start: int = 0):
    """Up to 8 edits of a ``size``-byte file: a byte set, a word of WORDS written, or bytes cut."""
    edits = []
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(start, size - 1))
        kind = draw(st.sampled_from(["byte", "word", "cut"]))
        value = draw(
            st.integers(0, 255)
            if kind == "byte"
            else st.sampled_from(WORDS)
            if kind == "word"
            else st.integers(1, 40)
        )
        edits.append((kind, at, value))
    return edits


def mutated(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for kind, at, value in edits:
        at = min(at, len(out) - 1)
        if kind == "byte":
            out[at] = value
        elif kind == "word":
            out[at : at + 4] = value
        else:
            del out[at : at + value]
    return bytes(out)


FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.data())
def test_damaged_captures_read_build_and_answer_or_raise_capture_error(tmp_path, data):
    seed = data.draw(st.sampled_from(SEEDS))
    path = Path(tmp_path) / f"pcap.{os.getpid()}"
    path.write_bytes(mutated(seed, data.draw(mutations(len(seed)))))
    index_path(path).unlink(missing_ok=True)
    try:
        with open_capture(path) as capture:
            scanned = list(capture)
    except CaptureError:
        scanned = None
    with contextlib.suppress(CaptureError):
        build_index(path)
    for _ in ("indexed", "scanned"):
        index = FlowIndex(index_path(path)) if index_path(path).exists() else None
        try:
            answer([path], flow(A, 1, B, 2))
        except CaptureError:
            # only a capture its reader refuses may fail a query, or one whose index says it is
            # damaged before its first record (a finished file ending inside it): nothing to read
            assert scanned is None or (
                index is not None and index.damaged_at is not None and not index.records
            )
        index_path(path).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def indexed_captures(tmp_path_factory):
    """Captures of one link type (pcap both byte orders, pcapng) with good indexes and scanned answers."""
    folder = tmp_path_factory.mktemp("indexed")
    out = []
    one_linktype_pcapng = g.pcapng_bytes(
        [g.Interface(1, 9), g.Interface(1, 6)], [(i % 2, T0 + i * 1000, g.ether(PACKET)) for i in range(12)]
    )
    for n, seed in enumerate([*SEEDS[:2], one_linktype_pcapng]):
        path = folder / f"pcap.{T0 // 10**9 + n}"
        path.write_bytes(seed)
        expected = answer([path], flow(A, 1, B, 2))
        build_index(path)
        out.append((path, index_path(path).read_bytes(), expected))
    return out


@FUZZ
@given(data=st.data())
def test_a_damaged_index_never_breaks_a_query(indexed_captures, data):
    """The header's digest still matches, so the index opens; its tables can say anything."""
    path, good, expected = data.draw(st.sampled_from(indexed_captures))
    index_path(path).write_bytes(mutated(good, data.draw(mutations(len(good), start=8))))
    index_module.forget_open_indexes()
    try:
        got = answer([path], flow(A, 1, B, 2))
    finally:
        index_path(path).write_bytes(good)
    # A damaged index may lose records (nothing checks its tables' content), never invent them.
    assert set(map(repr, pcap_records(got)[1])) <= set(map(repr, pcap_records(expected)[1]))
