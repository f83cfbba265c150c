"""The index bytes of varied captures are exactly those version 2 has always written, checksums aside.

Each capture below is generated (pcapgen, fixed seeds) and indexed; the SHA-256 of its index file
must equal the digest recorded here (version 3's checksums zeroed, its version number 2), taken from the
builder as the format was released. A change
of the builder that changes any of these bytes changes answers or the format: it needs a new
INDEX_VERSION, not new digests. (A change of pcapgen's output changes the captures themselves;
only then are the digests retaken, from a builder known to be unchanged.)
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pytest

import pcapgen as g
from engine.index import build_index, index_path
from engine.index.format import COLUMN, HEADER, HEADER_SIZE, header_checksum
from engine.index.icmp import COLUMNS as ICMP_COLUMNS
from tests.engine.conftest import T0, fragment6

V4 = ("10.1.2.3", 40000, "192.0.2.9", 443)
V6 = ("2001:db8::1", 40000, "2001:db8::99", 443)
MS = 1_000_000
UNKNOWN_LINKTYPE = 147  # a user link type: no flows


def mixed(seed: int, flows: int = 400, packets: int = 6000) -> list[tuple[int, bytes]]:
    """The generated mixed link: IPv4/IPv6, TCP/UDP/SCTP, 802.1Q and QinQ, a few heavy flows."""
    return list(g.mixed_traffic(T0, packets / 1000, flows, pps=1000, seed=seed))


def odd_packets() -> list[bytes]:
    """IP packets that take every path of the dissection: extension headers, fragments, ICMP, options."""
    big_v4 = g.udp("10.5.5.5", 5000, "192.0.2.50", 6000, bytes(range(256)) * 8, ident=77)
    big_v6 = g.udp("2001:db8::5", 5000, "2001:db8::50", 6000, bytes(range(256)) * 8)
    v4_frags, v6_frags = g.fragment(big_v4, 512), fragment6(big_v6, 512, ident=0x1234)
    quoted = g.tcp(*V4, b"quoted")
    packets = [
        g.tcp(*V4, b"data"),
        g.tcp(*V6, b"data"),
        g.udp(*V4, b"q"),
        g.sctp(*V6, b"q"),
        g.tcp(*V4, b"opts", ip_options=g.ROUTER_ALERT * 10),
        g.tcp(*V6, b"hop", ext_headers=["hop"]),
        g.tcp(*V6, b"rt", ext_headers=["routing", "dest"]),
        g.tcp(*V6, b"atomic", ext_headers=["fragment"]),
        g.tcp(*V6, b"all", ext_headers=["hop", "routing", "dest", "fragment", "dest"]),
        g.icmp_echo("10.7.7.7", "10.7.7.8", 9, 1),
        g.icmp_echo("10.7.7.8", "10.7.7.7", 9, 1, reply=True),
        g.icmp_echo("2001:db8::7", "2001:db8::8", 9, 2),
        g.icmp_error("10.9.9.9", quoted),
        g.icmp_error("2001:db8::9", g.tcp(*V6, b"quoted")),
        g.ip("10.3.3.3", "10.4.4.4", 47, b"gre!" * 10),
        g.ip("2001:db8::3", "2001:db8::4", 50, b"esp!" * 10),
        b"\x44" + g.tcp(*V4, b"bad ihl")[1:],
        b"\x75" + g.tcp(*V4, b"bad version")[1:],
        g.tcp(*V4, b"cut")[:22],
        g.udp(*V6, b"cut")[:42],
    ]
    # fragments out of order, and a later fragment whose first one never comes
    packets += v4_frags[1:] + v4_frags[:1] + v6_frags + g.fragment(g.udp(*V4, b"x" * 600, ident=5), 256)[1:]
    return packets


def odd_ethernet() -> list[bytes]:
    """Frames of ``odd_packets`` under several VLAN stacks, and frames that hold no IP."""
    frames = []
    for vlans in ((), (100,), ((g.QINQ, 200), 100), ((g.QINQ, 1), 2, 3), ((g.QINQ, 1), 2, 3, 4, 5)):
        frames += [g.ether(p, vlans=vlans) for p in odd_packets()]
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    frames += [arp, b"\x02" * 10, bytes(12) + b"\x81\x00\x00", g.ether(g.tcp(*V4))[:14]]
    return frames


def timed(frames: list[bytes], step: int = MS) -> list[tuple[int, bytes]]:
    return [(T0 + k * step, frame) for k, frame in enumerate(frames)]


def link_packets(linktype: int) -> list[tuple[int, bytes]]:
    """Packets of a few flows in both directions, framed for ``linktype`` (unknown ones: unframed)."""
    flows = g.mixed_flows(30, seed=linktype, vlan_share=0)
    packets = [flows[k % 30].packet(k % 3 == 0, b"p" * (k % 50), k) for k in range(300)] + odd_packets()
    if linktype == UNKNOWN_LINKTYPE:
        return timed(packets)
    return timed([g.frame(linktype, p) for p in packets])


def pcapng_mix() -> bytes:
    interfaces = [g.Interface(1), g.Interface(113, tsresol=9), g.Interface(101, tsresol=0x80 | 20)]
    records = []
    for k, (ts, frame) in enumerate(mixed(5, flows=50, packets=600)):
        records.append((0, ts, frame))
        if k % 7 == 0:
            records.append((1, ts + 1, g.sll(odd_packets()[k % 20])))
        if k % 11 == 0:
            records.append((2, ts + 3, odd_packets()[(k + 3) % 20]))
    return g.pcapng_bytes(interfaces, records, leading_blocks=[(0x0BAD, b"custom")])


def with_simple_blocks() -> bytes:
    records = [(0, ts, frame) for ts, frame in mixed(6, flows=20, packets=200)]
    records[50:50] = [(None, None, g.ether(g.udp(*V4, b"simple")))] * 3
    return g.pcapng_bytes([g.Interface(1, snaplen=128)], records, big_endian=True)


def cut_mid_record() -> bytes:
    data = g.pcap_bytes(mixed(7, flows=40, packets=500))
    return data[: len(data) - 300]


def impossible_caplen() -> bytes:
    data = bytearray(g.pcap_bytes(mixed(8, flows=40, packets=500)))
    at = 24
    for _ in range(200):  # the 201st record's header
        at += 16 + struct.unpack_from("<I", data, at + 8)[0]
    data[at + 8 : at + 12] = struct.pack("<I", 0x7FFFFFFF)
    return bytes(data)


def time_out_of_range() -> bytes:
    records = mixed(9, flows=40, packets=300)
    data = g.pcap_bytes(records, nanosecond=True)
    bad = struct.pack("<IIII", 0xFFFFFFFF, 2_000_000_000, 60, 60) + bytes(60)
    return data + bad + g.pcap_bytes(records[:5], nanosecond=True)[24:]


def pcapng_bad_block() -> bytes:
    records = [(0, ts, frame) for ts, frame in mixed(10, flows=40, packets=300)]
    at = len(g.pcapng_bytes([1], records[:100]))
    data = bytearray(g.pcapng_bytes([1], records))
    data[at + 4 : at + 8] = struct.pack("<I", 7)
    return bytes(data)


def long_span() -> bytes:
    """Three hours of a few flows, nanosecond times: flow times wider than 32 bits."""
    flows = g.mixed_flows(10, seed=11)
    step = 3 * 3600 * 10**9 // 400
    return g.pcap_bytes(
        [(T0 + k * step + k, flows[k % 10].frame(k % 2 == 0, b"z" * (k % 700))) for k in range(400)],
        nanosecond=True,
    )


CAPTURES: dict[str, Callable[[], bytes]] = {
    "mixed link": lambda: g.pcap_bytes(mixed(1)),
    "mixed link, big-endian, nanosecond": lambda: g.pcap_bytes(mixed(2), nanosecond=True, big_endian=True),
    "mixed link, 96-byte snapshots": lambda: g.pcap_bytes(mixed(3), snaplen=96),
    "mixed link, 40-byte snapshots": lambda: g.pcap_bytes(mixed(4, packets=2000), snaplen=40),
    "dns-like short flows": lambda: g.pcap_bytes(g.dns_traffic(T0, 60, 3000, seed=1)),
    "odd frames": lambda: g.pcap_bytes(timed(odd_ethernet())),
    "odd frames, big-endian": lambda: g.pcap_bytes(timed(odd_ethernet()), big_endian=True),
    **{
        f"link type {linktype}": (lambda linktype=linktype: g.pcap_bytes(link_packets(linktype), linktype))
        for linktype in (0, 12, 14, 101, 108, 113, 228, 229, 276, UNKNOWN_LINKTYPE)
    },
    "pcapng, three link types": pcapng_mix,
    "pcapng, simple blocks, big-endian": with_simple_blocks,
    "cut mid-record": cut_mid_record,
    "impossible record length": impossible_caplen,
    "time out of range": time_out_of_range,
    "pcapng bad block length": pcapng_bad_block,
    "long span": long_span,
    "no records": lambda: g.pcap_bytes([]),
    "no flows": lambda: g.pcap_bytes(timed([bytes(12) + b"\x08\x06" + bytes(28)] * 5)),
}

DIGESTS = {
    "mixed link": "719417e4ce29da941912c2a498848af7c29baccb97f6f81e014b0083e5df39c7",
    "mixed link, big-endian, nanosecond": "b27add6679bafadcbfd11c9ef9c22ed36a3dd5771e8c87c9747b84547d4db2c5",
    "mixed link, 96-byte snapshots": "40c6157b6b3e618363c93aa1292a61d29480fa6b7fc3a6c2e4f3dcceabdb3b77",
    "mixed link, 40-byte snapshots": "724044f1465f7399ff91574ceedbe60f6cce11933775c04922d9a93e82345997",
    "dns-like short flows": "ce936c72b05380d9ddec563efb85baa358a413db1db2453354940de0a159fccb",
    "odd frames": "d3adaba3a0586c10092b8b20847ebb535f927ed00ef6fffe051ad25537c35dd1",
    "odd frames, big-endian": "6590919837f5449ae866d86ed20b94e66805cf8a6d28ed230614247a28823a3a",
    "link type 0": "ee511c9b498a1dedafd6c847b0b21181e28558ccd447da43eca6c5681c9065dd",
    "link type 12": "a6b5cfa9739611fe7cad0a44b6e3583b752a15a1ab3cf36211083b65bfb0cf63",
    "link type 14": "0975a3628400f6e398be7be4a68875e2450e3c6ee61342dd2a3cf2015e110356",
    "link type 101": "6c2d4d31e413526de5c18b5b4b1af3710e3472b5f2f74aa3f6db6f2374a5ae54",
    "link type 108": "3287ca5e85f41568ac2d8637b8ecb657a578c5a158dc99aa1ababa5c5cb936ed",
    "link type 113": "c4b1b9ab03a141f98da1142b599a2adcba73c7cb43ca140e936df75ad0fc6792",
    "link type 228": "c1cc5b25180d68090b568662f8a54bbeaa7136ca083e0d68b7e4e926abeba382",
    "link type 229": "a02774c7484902214e44898837a2504888cc4b81ccff577af5687b4af13997f3",
    "link type 276": "925b55acd54359637425d7c7a44d21e8358bc0773f99ca09b0a4b00371a4fc8e",
    "link type 147": "6063cf064a69fd56e47d4935333ab6e1e8348f37d8ca9083b347563dd55ae25e",
    "pcapng, three link types": "12d0ae40419b3fb4af7c4d6923eea2174c99046e7d288c1b7824a3fda64ea5d9",
    "pcapng, simple blocks, big-endian": "79bd71fe379ef4733dadfaf910d9883683d698713b0703eca7806ea1dedbd706",
    "cut mid-record": "2193f569446c6f5e66f08dcdc801df5ae8f13af3837b56b35ab3443f609ed042",
    "impossible record length": "f2bb30df66c89e6ea059aa7c0631c9c4633b6f43cf895a7b369a8d36316331ba",
    "time out of range": "c43c4bd67f803c8cc38e9c4448c931cfafa6daabdbe1203bb977ad682067da01",
    "pcapng bad block length": "af62435afb437d204a00090ae7e1da46646534aba18a5abe7066d9a268afc87c",
    "long span": "17b360f50f0bfed57b00cf3fe181f3ba454d7e3a4816df19fd6466b9dac4b1e3",
    "no records": "832e1c708a76e2d0d6f9651ab2861eb8abaebe7d8c159194c6129acd56472efd",
    "no flows": "cc8c3feb9a531cd91050b006e092763a61c8dcfe120f4f06066138d9d0a8c817",
}


def without_icmp_columns(data: bytes) -> bytes:
    """Version 4's bytes as version 3 wrote them: its ICMP message columns (the last ones) left out,
    the header's column count and checksum made for what is left."""
    header = HEADER.unpack_from(data)
    if header[1] < 4:
        return data
    columns, directory_end = header[11], HEADER_SIZE + COLUMN.size * header[11]
    names = [COLUMN.unpack_from(data, HEADER_SIZE + COLUMN.size * i)[0].rstrip(b"\0") for i in range(columns)]
    kept = columns - len(ICMP_COLUMNS)
    assert [n.decode() for n in names[kept:]] == list(ICMP_COLUMNS)
    at = directory_end + (-directory_end % 8)
    for i in range(kept):
        _, dtype, _, count = COLUMN.unpack_from(data, HEADER_SIZE + COLUMN.size * i)
        length = np.dtype(dtype.rstrip(b"\0").decode()).itemsize * count
        at += length + (-length % 8)
    directory = data[HEADER_SIZE : HEADER_SIZE + COLUMN.size * kept]
    head = bytearray(data[:HEADER_SIZE])
    fields = list(header)
    fields[1], fields[11], fields[-1] = 3, kept, 0
    head = bytearray(HEADER.pack(*fields)) + head[HEADER.size :]
    struct.pack_into("<I", head, HEADER.size - 4, header_checksum(bytes(head), directory))
    end = HEADER_SIZE + len(directory)
    start = directory_end + (-directory_end % 8)
    return bytes(head) + directory + b"\0" * (-end % 8) + data[start:at]


def as_version_2(data: bytes) -> bytes:
    """Version 3's bytes (version 4's without its ICMP columns) with its checksums zeroed and its
    version 2: the bytes version 2 wrote.

    The checksums are checked too: the header's over the header and directory, each column's.
    """
    data = without_icmp_columns(data)
    out = bytearray(data)
    header = HEADER.unpack_from(data)
    columns, directory_end = header[11], HEADER_SIZE + COLUMN.size * header[11]
    assert header_checksum(data[:HEADER_SIZE], data[HEADER_SIZE:directory_end]) == header[-1]
    struct.pack_into("<I", out, 8, 2)
    struct.pack_into("<I", out, HEADER.size - 4, 0)
    at = directory_end + (-directory_end % 8)
    for i in range(columns):
        entry = HEADER_SIZE + COLUMN.size * i
        _, dtype, crc, count = COLUMN.unpack_from(data, entry)
        length = np.dtype(dtype.rstrip(b"\0").decode()).itemsize * count
        assert zlib.crc32(data[at : at + length]) == crc
        struct.pack_into("<I", out, entry + 12, 0)
        at += length + (-length % 8)
    return bytes(out)


@pytest.mark.parametrize("name", CAPTURES)
def test_the_index_bytes_are_those_version_2_wrote_with_checksums_added(tmp_path, name):
    capture = tmp_path / "pcap.1700000000"
    capture.write_bytes(CAPTURES[name]())
    build_index(capture)
    digest = hashlib.sha256(as_version_2(index_path(capture).read_bytes())).hexdigest()
    assert digest == DIGESTS[name], f"{name}: index digest {digest}"
