"""The bulk answer path gives the bytes of the per-record path, whatever the files, selection and limits."""

from __future__ import annotations

import struct

import pytest

import pcapgen as g
from engine.index import build_index
from engine.query import many_candidates as bulk
from engine.query import pieces
from engine.query import unindexed as bulkscan
from engine.query.answer import Limits
from engine.query.plan import query_captures
from engine.selection.selectors import Selection
from tests.engine.conftest import T0, flow, pcap_records
from tests.engine.test_select import CASES, _traffic, selection_of

US = 1000
JUMBO = g.udp("10.7.0.2", 5000, "198.51.100.9", 53, b"j" * 9000)  # longer than a read's tail


def _records(base: int, rounds: int, vlans=((), (7,), ((g.QINQ, 8), 9))) -> list[tuple[int, bytes]]:
    """The selector tests' traffic, ``rounds`` times over, between noise, with jumbo frames and gaps."""
    traffic = _traffic()
    noise = g.ether(g.tcp("10.99.0.1", 1111, "10.99.0.2", 2222, b"n" * 1400))
    out, ts = [], base
    for r in range(rounds):
        for i, (packet, _) in enumerate(traffic):
            out.append((ts, g.ether(packet, vlans[(i + r) % len(vlans)])))
            ts += 7 * US
            if i % 5 == 0:
                out.append((ts, noise))
                ts += US
        out.append((ts, g.ether(JUMBO)))
        ts += US
        for _ in range(60 if r % 3 == 0 else 0):  # 90 kB of other traffic: the candidates lie apart
            out.append((ts, noise))
            ts += US
    return out


def _unnormalised(path, records) -> None:
    """A µs pcap whose every 9th record writes its time as seconds and a million or more µs."""
    with open(path, "wb") as out:
        out.write(g.pcap_header())
        for n, (ts, frame) in enumerate(records):
            secs, frac = divmod(ts, 10**9)
            frac //= 1000
            if n % 9 == 0 and secs:
                secs, frac = secs - 1, frac + 1_000_000
            out.write(struct.pack("<IIII", secs, frac, len(frame), len(frame)) + frame)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Indexed files of every kind the bulk path meets or hands back, some overlapping in time."""
    folder = tmp_path_factory.mktemp("bulk")
    kinds = {}
    minute = 60 * 10**9
    kinds["ether"] = folder / f"pcap.{T0 // 10**9}"
    g.write_pcap(kinds["ether"], _records(T0, 12))
    kinds["overlapping"] = folder / f"pcap.{T0 // 10**9 + 1}"  # the same times as the first file
    g.write_pcap(kinds["overlapping"], _records(T0, 4, vlans=((),)))
    kinds["nanosecond"] = folder / f"pcap.{T0 // 10**9 + 60}"
    g.write_pcap(kinds["nanosecond"], _records(T0 + minute + 3, 6), nanosecond=True)
    kinds["big endian"] = folder / f"pcap.{T0 // 10**9 + 120}"
    g.write_pcap(kinds["big endian"], _records(T0 + 2 * minute, 6), big_endian=True)
    kinds["unnormalised"] = folder / f"pcap.{T0 // 10**9 + 180}"
    _unnormalised(kinds["unnormalised"], _records(T0 + 3 * minute, 6))
    kinds["sll"] = folder / f"pcap.{T0 // 10**9 + 300}"
    sll = [(ts, g.sll(frame[14:])) for ts, frame in _records(T0 + 5 * minute, 6, vlans=((),))]
    g.write_pcap(kinds["sll"], sll, linktype=113, nanosecond=True)
    kinds["plain"] = folder / f"pcap.{T0 // 10**9 + 360}"  # no fragments: a scan goes in bulk to its end
    g.write_pcap(kinds["plain"], g.mixed_traffic(T0 + 6 * minute, 2, 40, pps=3000, seed=3))
    kinds["pcapng"] = folder / f"pcap.{T0 // 10**9 + 240}"
    pcapng = [(0, ts, frame) for ts, frame in _records(T0 + 4 * minute, 6)]
    g.write_pcapng(kinds["pcapng"], [g.Interface(1, tsresol=9)], pcapng)
    for path in kinds.values():
        build_index(path)
    return kinds


@pytest.fixture(scope="module")
def unindexed(files, tmp_path_factory):
    """The same files without their indexes: answered by a scan."""
    folder = tmp_path_factory.mktemp("unindexed")
    copies = {}
    for kind, path in files.items():
        copies[kind] = folder / path.name
        copies[kind].write_bytes(path.read_bytes())
    return copies


@pytest.fixture(params=[False, True], ids=["indexed", "scanned"])
def tree(request, files, unindexed, monkeypatch):
    """The files with their indexes, or without (every size of file scanned in bulk)."""
    if request.param:
        monkeypatch.setattr(bulkscan, "SCAN_MIN", 0)
        return unindexed
    return files


SETS = {
    "one file": ["ether"],
    "overlapping files": ["ether", "overlapping"],
    "µs and ns files": ["ether", "nanosecond"],
    "big endian": ["big endian"],
    "unnormalised times": ["unnormalised"],
    "two link types": ["ether", "sll"],
    "no fragments": ["plain", "ether"],
    "every kind": ["ether", "overlapping", "nanosecond", "big endian", "unnormalised", "pcapng", "sll"],
}
SELECTIONS = {
    name: CASES[name] for name in ("nothing", "a host", "a v4 network", "a port", "icmp", "combined")
}
SELECTIONS["community id of tcp"] = CASES["community id of tcp"]
LIMITS = [None, Limits(packets=37), Limits(bytes=20_000), Limits(packets=500, bytes=300_000)]


def both(paths, selection, **options) -> tuple[bytes, bytes]:
    fast = b"".join(query_captures(paths, selection, **options))
    slow = b"".join(query_captures(paths, selection, bulk=False, **options))
    return fast, slow


@pytest.fixture(params=["default", "tiny", "few"], ids=["default reads", "tiny reads", "few records"])
def reads(request, monkeypatch):
    """The default read sizes, or tiny ones (steps cut after a few records, runs after a few bytes),
    or every indexed file read the way of a file with few candidates (``engine.query.few_candidates``)."""
    if request.param == "tiny":
        monkeypatch.setattr(bulk, "MAX_READ", 6000)
        monkeypatch.setattr(bulk, "GAP", 300)
    if request.param == "few":
        monkeypatch.setattr(bulk, "BULK_MIN", 1 << 62)
    return request.param


@pytest.mark.parametrize("limits", LIMITS, ids=lambda x: "no limits" if x is None else str(x))
@pytest.mark.parametrize("case", list(SELECTIONS))
@pytest.mark.parametrize("kinds", list(SETS))
def test_the_bulk_path_answers_byte_for_byte_as_the_per_record_path(tree, kinds, case, limits, reads):
    paths = [tree[kind] for kind in SETS[kinds]]
    fast, slow = both(paths, selection_of(SELECTIONS[case]), limits=limits)
    assert fast == slow
    if case != "nothing" or limits is not None:
        assert len(fast) > 100, "the selection takes packets"


def test_the_bulk_path_is_taken_for_many_candidates_and_copies_runs_whole(files, monkeypatch):
    taken = []
    real = bulk.indexed_pieces

    def spy(*args, **kwargs):
        taken.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr("engine.query.plan.indexed_pieces", spy)
    fast, slow = both([files["ether"]], Selection(0, 2**62))
    assert fast == slow and taken == [len(pcap_records(fast)[1])]
    # Every record is selected: the file's records come out as they are in the file.
    assert fast[24:] == files["ether"].read_bytes()[24:]


@pytest.mark.parametrize("case", ["nothing", "a v4 network", "community id of tcp"])
def test_a_pcapng_answer_of_classic_files_is_the_same_in_bulk(files, case, reads):
    paths = [files[kind] for kind in SETS["every kind"]]
    for limits in (None, Limits(packets=300)):
        fast, slow = both(paths, selection_of(SELECTIONS[case]), limits=limits, pcapng_name="sensor 1")
        assert fast == slow and fast[:4] == b"\x0a\x0d\x0d\x0a"


def test_a_window_cut_inside_a_file_keeps_both_ends_exactly(files):
    header, records = pcap_records(b"".join(query_captures([files["ether"]], Selection(0, 2**62))))
    times = [secs * 10**9 + frac * 1000 for secs, frac, _, _ in records]
    start, end = times[100], times[400]
    fast, slow = both([files["ether"], files["overlapping"]], Selection(start, end))
    assert fast == slow
    got = [secs * 10**9 + frac * 1000 for secs, frac, _, _ in pcap_records(fast)[1]]
    assert got[0] == start and got[-1] == end


def test_the_seed_five_tuple_with_fragments_and_jumbo_frames_goes_in_bulk(files):
    q = flow("10.7.0.2", 5000, "198.51.100.9", 53)
    fast, slow = both([files["ether"], files["nanosecond"]], q)
    assert fast == slow
    frames = [frame for _, _, _, frame in pcap_records(fast)[1]]
    assert sum(len(frame) > 9000 for frame in frames) == 18  # 12 + 6 jumbo frames
    assert len(frames) > 64


@pytest.mark.parametrize("chunk_size", [1, 4096, 1 << 20])
def test_chunks_are_at_least_the_asked_size_except_the_last(files, chunk_size):
    chunks = list(
        query_captures([files["ether"], files["nanosecond"]], Selection(0, 2**62), chunk_size=chunk_size)
    )
    assert all(len(c) >= chunk_size for c in chunks[:-1])
    assert b"".join(chunks) == b"".join(
        query_captures([files["ether"], files["nanosecond"]], Selection(0, 2**62), bulk=False)
    )


def test_a_capture_cut_short_after_indexing_is_answered_as_the_per_record_path_does(files, tmp_path):
    cut = tmp_path / files["ether"].name
    data = files["ether"].read_bytes()
    cut.write_bytes(data)
    build_index(cut)
    # The index no longer describes the file: both read it by a scan, up to where it ends.
    cut.write_bytes(data[: len(data) * 2 // 3])
    fast, slow = both([cut], selection_of(CASES["a v4 network"]))
    assert fast == slow and len(pcap_records(fast)[1]) > 64


@pytest.mark.parametrize("bulk_min", [bulk.BULK_MIN, 1 << 62], ids=["in bulk", "few records"])
@pytest.mark.parametrize("damage", ["impossible length", "impossible time"])
def test_a_record_damaged_after_indexing_hands_the_rest_to_the_per_record_path(
    files, tmp_path, damage, bulk_min, monkeypatch
):
    monkeypatch.setattr(bulk, "BULK_MIN", bulk_min)
    path = tmp_path / files["ether"].name
    data = bytearray(files["ether"].read_bytes())
    path.write_bytes(data)
    build_index(path)
    _, records = pcap_records(bytes(data))
    at = 24 + sum(16 + len(frame) for _, _, _, frame in records[: len(records) // 2])
    if damage == "impossible length":
        data[at + 8 : at + 12] = struct.pack("<I", 0xFFFFFF)
    else:
        data[at : at + 8] = struct.pack("<II", 0xFFFFFFFF, 0xFFFFFFFF)
    path.write_bytes(data)  # same size, same head and tail: the index still describes it
    for case in ("nothing", "a v4 network"):
        outcomes = []
        for fast in (True, False):
            try:
                outcomes.append(b"".join(query_captures([path], selection_of(CASES[case]), bulk=fast)))
            except Exception as exc:  # noqa: BLE001 - both paths must fail alike
                outcomes.append(repr(exc))
        assert outcomes[0] == outcomes[1]


def test_a_file_without_fragments_is_scanned_in_bulk_to_its_end(unindexed, monkeypatch):
    monkeypatch.setattr(bulkscan, "SCAN_MIN", 0)
    handed_back = []
    real = pieces.encoded_pieces

    def spy(records, writer, *args):
        handed_back.append(1)
        return real(records, writer, *args)

    monkeypatch.setattr(pieces, "encoded_pieces", spy)
    monkeypatch.setattr("engine.query.plan.encoded_pieces", spy)
    selection = selection_of(CASES["a v4 network"])
    fast = b"".join(query_captures([unindexed["plain"]], selection))
    assert len(pcap_records(fast)[1]) > 1000
    assert not handed_back, "nothing was left to the per-record scan"
    monkeypatch.undo()
    assert fast == b"".join(query_captures([unindexed["plain"]], selection, bulk=False))
