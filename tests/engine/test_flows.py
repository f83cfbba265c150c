"""Flow listings against the generator's own manifest: every flow with packets in the window, never undercounted."""

from __future__ import annotations

import ipaddress
import random
from collections import defaultdict

import pytest

import pcapgen as g
from engine.flow import Selection, address16
from engine.flows import list_flows
from engine.index import build_index, index_path
from tests.engine.conftest import T0
from tests.engine.test_select import Truth, _traffic, wanted

S = 10**9


TWO_WAY_ICMP = (0, 8, 13, 14, 128, 129, 135, 136)


def canonical(proto: int, src: str, sport: int, dst: str, dport: int) -> tuple:
    """One name per flow: the ends by (address, port), except a one-way ICMP message's, kept as sent."""
    if proto in (1, 58) and sport not in TWO_WAY_ICMP:
        return (proto, src, sport, dst, dport)
    a, b = (address16(ipaddress.ip_address(x)) for x in (src, dst))
    return (proto, src, sport, dst, dport) if (a, sport) <= (b, dport) else (proto, dst, dport, src, sport)


def _fold(t: Truth) -> tuple:
    """The flow a listing row names: ICMP by its Community ID ports."""
    return canonical(t.proto, t.src, *t.ports()[:1], t.dst, t.ports()[1])


@pytest.fixture(scope="module")
def minutes(tmp_path_factory):
    """Five one-minute files of mixed traffic, each packet written with its truth: the manifest."""
    folder = tmp_path_factory.mktemp("flows")
    rng = random.Random(9)
    flows = g.mixed_flows(30, seed=2, v6_share=0.4, vlan_share=0.3)
    extra = _traffic()
    files, manifest = [], []
    for minute in range(5):
        base = T0 + minute * 60 * S
        records = []
        for n in range(300):
            ts = base + n * 200_000_000 + rng.randrange(1000) * 1000
            if n % 3 == 0:
                packet, truth = extra[(n // 3) % len(extra)]
            else:
                f = rng.choice(flows)
                forward = rng.random() < 0.5
                packet = f.packet(forward, b"x" * rng.randrange(200))
                truth = Truth(
                    f.proto, *((f.a, f.a_port, f.b, f.b_port) if forward else (f.b, f.b_port, f.a, f.a_port))
                )
            frame = g.ether(packet)
            records.append((ts, frame))
            manifest.append((ts, len(frame), truth))
        path = folder / f"pcap.{base // S}"
        g.write_pcap(path, records)
        files.append(path)
    return files, manifest


def truth_in(manifest, given: dict, start: int, end: int) -> dict:
    """Per flow: (packets, bytes, first, last) of the manifest's packets in the window that the selection takes."""
    totals: dict[tuple, list] = defaultdict(lambda: [0, 0, None, None])
    for ts, size, truth in manifest:
        if start <= ts <= end and wanted(truth, given):
            entry = totals[_fold(truth)]
            entry[0] += 1
            entry[1] += size
            entry[2] = ts if entry[2] is None else min(entry[2], ts)
            entry[3] = ts if entry[3] is None else max(entry[3], ts)
    return dict(totals)


def row_key(row) -> tuple:
    return canonical(row.proto, row.src_addr, row.src_port, row.dst_addr, row.dst_port)


def first_senders(manifest, start: int, end: int) -> dict:
    """Per flow, the address that sent its first packet in the minute files that overlap the window."""
    first_file, last_file = (start - T0) // (60 * S), (end - T0) // (60 * S)
    senders: dict[tuple, str] = {}
    for ts, _size, truth in sorted(manifest, key=lambda m: m[0]):
        if first_file <= (ts - T0) // (60 * S) <= last_file:
            senders.setdefault(_fold(truth), truth.src)
    return senders


CASES = [
    {},
    {"src_addr": "10.0.0.0/8"},
    {"dst_port": 443},
    {"proto": 1},
    {"proto": 58},
    {"src_addr": "2001:db8::/32", "proto": 6},
]


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "scanned"])
@pytest.mark.parametrize("given", CASES, ids=[str(c) for c in CASES])
@pytest.mark.parametrize(
    ("start", "end"), [(0, 5 * 60), (60, 120), (90, 150)], ids=["all", "one file", "halves"]
)
def test_every_flow_with_packets_in_the_window_is_listed_never_undercounted(
    minutes, given, indexed, start, end
):
    files, manifest = minutes
    for path in files:
        build_index(path) if indexed else index_path(path).unlink(missing_ok=True)
    window = (T0 + start * S, T0 + end * S - 1)
    renamed = {("src" if k == "src_addr" else "dst" if k == "dst_addr" else k): v for k, v in given.items()}
    listing = list_flows(files, Selection(*window, **renamed), limit=100000)
    truth = truth_in(manifest, given, *window)
    rows = {row_key(r): r for r in listing.rows}
    assert set(rows) == set(truth)
    assert not listing.truncated and truth
    for key, (packets, size, first, last) in truth.items():
        row = rows[key]
        assert row.packets >= packets and row.bytes >= size
        assert row.first_ns <= first and row.last_ns >= last
        if not row.approximate:
            assert (row.packets, row.bytes, row.first_ns, row.last_ns) == (packets, size, first, last)
    senders = first_senders(manifest, *window)
    for key, row in rows.items():
        assert row.src_addr == senders[key], "src_* is the end that sent first"
    if (start, end) == (0, 5 * 60):
        assert not any(r.approximate for r in listing.rows)


def test_rows_carry_the_community_id_and_sort_and_limit(minutes):
    files, manifest = minutes
    for path in files:
        build_index(path)
    s = Selection(T0, T0 + 5 * 60 * S)
    everything = list_flows(files, s, limit=100000).rows
    by_id = {r.community_id: r for r in everything}
    for _ts, _, truth in manifest[:200]:
        assert truth.community_id() in by_id
    biggest = list_flows(files, s, sort="-bytes", limit=3)
    assert biggest.truncated and len(biggest.rows) == 3
    assert [r.bytes for r in biggest.rows] == sorted((r.bytes for r in everything), reverse=True)[:3]
    firsts = [r.first_ns for r in list_flows(files, s, sort="first").rows]
    assert firsts == sorted(firsts)
    lasts = [r.last_ns for r in list_flows(files, s, sort="last").rows]
    assert lasts == sorted(lasts)
    packets = [r.packets for r in list_flows(files, s, sort="-packets").rows]
    assert packets == sorted(packets, reverse=True)
    one = everything[0]
    again = list_flows(files, Selection(T0, T0 + 5 * 60 * S, community_id=one.community_id)).rows
    assert [row_key(r) for r in again] == [row_key(one)]


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "scanned"])
def test_each_icmp_row_names_the_end_that_sent_its_own_first_message(tmp_path, indexed):
    # Two host pairs; in each, the echo is begun by one end and the last message (an unreachable,
    # one-way) is sent by the other: every row's src is its own first sender, not the last one's.
    messages = [
        g.icmp_echo("10.1.0.1", "10.1.0.2", 5, 1),
        g.icmp_echo("10.1.0.2", "10.1.0.1", 5, 1, reply=True),
        g.icmp_echo("10.2.0.2", "10.2.0.1", 6, 1),
        g.icmp_echo("10.2.0.1", "10.2.0.2", 6, 1, reply=True),
        g.icmp("10.2.0.1", "10.2.0.2", 3, 1),
        g.icmp("10.1.0.2", "10.1.0.1", 3, 1),
    ]
    path = tmp_path / f"pcap.{T0 // S}"
    g.write_pcap(path, [(T0 + k * S, g.ether(m)) for k, m in enumerate(messages)])
    if indexed:
        build_index(path)
    rows = list_flows([path], Selection(T0, T0 + 10 * S)).rows
    senders = {(r.src_port, r.dst_port, r.src_addr, r.dst_addr) for r in rows}
    assert senders == {
        (8, 0, "10.1.0.1", "10.1.0.2"),
        (8, 0, "10.2.0.2", "10.2.0.1"),
        (3, 1, "10.2.0.1", "10.2.0.2"),
        (3, 1, "10.1.0.2", "10.1.0.1"),
    }


def test_icmp_rows_from_the_index_are_those_read_from_the_records(tmp_path, minutes, monkeypatch):
    """Version 4 indexes keep ICMP rows split by message: the same rows as the records give (the
    path of version 3, which reads the ICMP flows' records) for every selection; an index of
    version 3 is still read, its ICMP rows from the records."""
    import engine.flows
    from engine.index import columns, index_is_current, open_index
    from tests.engine.test_index_bytes import without_icmp_columns
    from tests.engine.test_select import CASES as SELECTIONS
    from tests.engine.test_select import selection_of

    files = []
    for path in minutes[0]:
        copy = tmp_path / path.name
        copy.write_bytes(path.read_bytes())
        build_index(copy)
        files.append(copy)

    def listings() -> dict[str, list]:
        found = {}
        for name, given in SELECTIONS.items():
            rows = list_flows(files, selection_of(given, T0, T0 + 5 * 60 * S), limit=100000).rows
            found[name] = sorted(
                (row_key(r), r.packets, r.bytes, r.first_ns, r.last_ns, r.approximate, r.community_id)
                for r in rows
            )
        return found

    read: list[str] = []
    from_records = engine.flows._icmp_rows

    def reading(file, *args):
        read.append(file.path)
        return from_records(file, *args)

    monkeypatch.setattr(engine.flows, "_icmp_rows", reading)
    new = listings()
    assert read == []  # no record read
    assert sum(row[0][0] in (1, 58) for row in new["nothing"]) >= 4
    assert new["community id of an icmp error"] and new["icmp echo type"]
    hidden = lambda self, name: name in self._columns and not str(name).startswith("icmp")  # noqa: E731
    monkeypatch.setattr(columns._CheckedColumns, "__contains__", hidden)
    assert listings() == new
    assert read  # the records were read
    monkeypatch.setattr(columns._CheckedColumns, "__contains__", lambda self, name: name in self._columns)
    # the same files with indexes of version 3: read, their ICMP rows from the records
    for f in files:
        index_path(f).write_bytes(without_icmp_columns(index_path(f).read_bytes()))
    opened = open_index(files[0])
    assert opened is not None and opened.header.version == 3
    assert not index_is_current(files[0])  # reindex rebuilds it, with the ICMP columns
    read.clear()
    assert listings() == new
    assert read
