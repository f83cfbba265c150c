"""The compiled loops of the index build: what they compute, against numpy and hashlib, and where their code is cached."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcapgen as g
from engine.dissection import native
from engine.dissection.fields import FlowColumns, compiled_flow_columns, flow_columns
from engine.dissection.recordtable import walk_pcap, walk_pcapng
from engine.formats import PcapngCapture, open_capture
from engine.index import build_index, index_path
from engine.index import native as index_native
from tests.engine.conftest import T0
from tests.engine.test_index_bytes import CAPTURES, odd_packets

ROOT = Path(__file__).resolve().parents[2]


def community_message(a: bytes, b: bytes, proto: int, a_port: int, b_port: int) -> bytes:
    """The Community ID v1 message (seed 0) of a folded flow, laid out by hand."""
    ports = a_port.to_bytes(2, "big") + b_port.to_bytes(2, "big") if proto in (6, 17, 132) else b""
    return b"\0\0" + a + b + bytes((proto, 0)) + ports


def test_community_id_heads_are_the_first_bytes_of_the_sha1_of_each_flows_message():
    rng = np.random.default_rng(7)
    n = 3000
    halves = [rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False) for _ in range(4)]
    a_hi, a_lo, b_hi, b_lo = halves
    protos = rng.choice([6, 17, 132, 1, 58, 47, 0, 255], n).astype(np.uint64)
    a_port, b_port = (rng.integers(0, 65536, n).astype(np.uint64) for _ in range(2))
    ports = a_port << np.uint64(24) | b_port << np.uint64(8) | protos
    v4 = rng.random(n) < 0.5
    heads = index_native.community_id_heads(a_hi, a_lo, b_hi, b_lo, ports, v4)
    for k in range(n):
        proto = int(protos[k])
        if proto in (1, 58):
            assert heads[k] == 0
            continue
        if v4[k]:
            a, b = (
                (int(a_lo[k]) & 0xFFFFFFFF).to_bytes(4, "big"),
                (int(b_lo[k]) & 0xFFFFFFFF).to_bytes(4, "big"),
            )
        else:
            a = int(a_hi[k]).to_bytes(8, "big") + int(a_lo[k]).to_bytes(8, "big")
            b = int(b_hi[k]).to_bytes(8, "big") + int(b_lo[k]).to_bytes(8, "big")
        digest = hashlib.sha1(community_message(a, b, proto, int(a_port[k]), int(b_port[k]))).digest()
        assert heads[k] == int.from_bytes(digest[:2], "big"), k


def test_the_record_walk_follows_either_byte_order_to_the_last_whole_header():
    records = [(T0 + k * 1000, g.ether(g.udp("10.0.0.1", k, "10.0.0.2", 53, b"x" * k))) for k in range(50)]
    for big_endian in (False, True):
        data = g.pcap_bytes(records, big_endian=big_endian, snaplen=60) + b"\0" * 15  # a header cut short
        offsets, headers = native.record_headers(np.frombuffer(data, np.uint8), 24, big_endian)
        expected_offsets, expected_headers, at = [], [], 24
        for ts, frame in records:
            expected_offsets.append(at)
            expected_headers.append([ts // 10**9, ts % 10**9 // 1000, min(60, len(frame)), len(frame)])
            at += 16 + min(60, len(frame))
        assert offsets.tolist() == expected_offsets and headers.tolist() == expected_headers


def test_the_record_walk_ends_at_an_impossible_length():
    data = bytearray(g.pcap_bytes([(T0, b"x" * 100)] * 5))
    data[24 + 2 * 116 + 8 : 24 + 2 * 116 + 12] = (1 << 31).to_bytes(4, "little")
    offsets, headers = native.record_headers(np.frombuffer(bytes(data), np.uint8), 24, False)
    assert offsets.tolist() == [24, 140, 256] and headers[-1, 2] == 1 << 31


@pytest.mark.slow
def test_a_code_tree_left_unwritten_keeps_the_compiled_code_in_numba_cache_dir(tmp_path):
    """As under a read-only install: the project sets NUMBA_CACHE_DIR under PAR_DATA_DIR (settings)."""
    tree, cache = tmp_path / "tree", tmp_path / "cache"
    for package in ("engine", "pcapgen"):
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    capture = tmp_path / "pcap.1700000000"
    g.write_pcap(capture, g.mixed_traffic(T0, 1, 40, pps=500, seed=3))
    before = sorted(p for p in tree.rglob("*"))
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(cache),
        "PYTHONPATH": str(tree),
        "HOME": str(tmp_path / "none"),
    }
    code = f"from engine.index import build_index; build_index({str(capture)!r}, {str(tmp_path / 'built.idx')!r})"
    for _ in range(2):  # the second run loads what the first one cached
        subprocess.run([sys.executable, "-B", "-c", code], cwd=tmp_path, env=env, check=True, timeout=300)
    assert sorted(p for p in tree.rglob("*")) == before  # nothing written into the code tree
    assert list(cache.rglob("*.nbi")) and list(cache.rglob("*.nbc"))
    build_index(capture)
    assert (tmp_path / "built.idx").read_bytes() == index_path(capture).read_bytes()


def record_table(path: Path, data: bytes):
    with open_capture(path) as capture:
        if isinstance(capture, PcapngCapture):
            return walk_pcapng(capture)
        return walk_pcap(capture, data, len(data))


def assert_same_columns(path: Path) -> None:
    data = path.read_bytes()
    table = record_table(path, data)
    by_numpy, slow_numpy = flow_columns(data, len(data), table)
    compiled, slow_compiled = compiled_flow_columns(data, len(data), table)
    assert slow_numpy.tolist() == slow_compiled.tolist()
    for field in fields(FlowColumns):
        expected, found = getattr(by_numpy, field.name), getattr(compiled, field.name)
        assert expected.dtype == found.dtype and expected.tolist() == found.tolist(), field.name


@pytest.mark.parametrize("name", CAPTURES)
def test_the_compiled_dissection_gives_the_columns_numpy_gives(tmp_path, name):
    path = tmp_path / "pcap.1700000000"
    path.write_bytes(CAPTURES[name]())
    assert_same_columns(path)


LINKTYPES = (0, 1, 12, 101, 108, 113, 228, 229, 276)
PACKETS = odd_packets()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    linktype=st.sampled_from(LINKTYPES),
    frames=st.lists(
        st.tuples(
            st.integers(0, len(PACKETS) - 1),
            st.lists(st.tuples(st.integers(0, 90), st.integers(0, 255)), max_size=4),
            st.integers(0, 120),
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_the_compiled_dissection_agrees_with_numpy_on_damaged_frames(tmp_path, linktype, frames):
    built = []
    for which, changes, cut in frames:
        frame = bytearray(g.frame(linktype, PACKETS[which]))
        for at, value in changes:
            if at < len(frame):
                frame[at] = value
        built.append(bytes(frame[: max(cut, 1)]))
    path = tmp_path / "pcap.1700000000"
    path.write_bytes(g.pcap_bytes([(T0 + k * 1000, f) for k, f in enumerate(built)], linktype))
    assert_same_columns(path)
