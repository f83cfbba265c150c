"""Storage tiers: captures compressed at rest (zstd seekable) and archived to a real S3 server, every answer exact.

Each tier is checked the way a user would: the same /data.pcap and /flows answers, byte for byte,
as from the raw capture; ``zstd -dc`` gives the capture back; a kill at any moment of compress or
archive, then a rerun, leaves every capture in exactly one place; an unreachable archive is a 503
naming it; a corrupt object is damage named in X-PAR-Damaged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path

import pytest
from django.test import Client, override_settings

from engine.compress import compress_capture
from engine.flow import FlowQuery
from engine.formats import archived, open_capture
from engine.formats.seekable import SeekableZstd, forget_shared_frames, read_seek_table
from engine.formats.source import LocalFile
from engine.index import build_index, index_is_current, open_index
from engine.query import query_captures
from node import store, tiers
from node.filer import FilerOptions, run_pass, tier_pass
from pcapgen import ether, pcap_bytes, udp, write_pcap
from tests.node.captures import A_PORT, B_PORT, FILE_SECONDS, T0, A, B, make_tree, window
from tests.node.filing import filer_env, manage, start_manage, write_captures
from tests.s3 import S3Server, s3_env

NS = 1_000_000_000
BASE = 1432321101


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def node_client(tree, **extra):
    return override_settings(
        ROOT_URLCONF="parsite.urls_node",
        PAR_ROLE="node",
        PAR_CAPTURE_DIR=tree.capture_dir,
        PAR_FILER_DIR=tree.filer_dir,
        PAR_UTC=True,
        **extra,
    )


QUERIES = [
    window(T0, T0 + 3 * FILE_SECONDS),
    window(T0 + 10, T0 + 70),
    {**window(T0, T0 + 3 * FILE_SECONDS), "proto": "17"},
    {"src_addr": "10.0.0.3", "start_time": str(T0), "end_time": str(T0 + 200)},
    {"dst_port": "80", "start_time": str(T0), "end_time": str(T0 + 200), "format": "pcapng"},
]
FLOWS = [
    {"start_time": str(T0), "end_time": str(T0 + 200)},
    {"src_addr": "10.0.0.1", "start_time": str(T0 + 5), "end_time": str(T0 + 100)},
]


def answers(tree) -> tuple[list[tuple[int, bytes, str | None]], list[tuple[int, bytes]]]:
    with node_client(tree):
        client = Client()
        pcaps = []
        for params in QUERIES:
            response = client.get("/data.pcap", params)
            content = body(response) if response.status_code == 200 else response.content
            pcaps.append((response.status_code, content, response.get("X-PAR-Damaged")))
        flows = [(r.status_code, r.content) for r in (client.get("/flows", params) for params in FLOWS)]
    return pcaps, flows


def filed_captures(filer_dir: Path) -> dict[str, list[Path]]:
    """capture name -> every path under ``filer_dir`` holding it (raw, .zst, .archived)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(filer_dir.rglob("pcap.*")):
        name = path.name.removesuffix(".zst").removesuffix(".archived")
        if path.is_file() and store.name_epoch(name, "pcap") is not None:
            found.setdefault(name, []).append(path)
    return found


def hidden_files(*dirs: Path) -> list[Path]:
    """Hidden files a crashed writer could leave (the filer tree's stamp is no such file)."""
    return [p for d in dirs for p in d.rglob(".*") if p.is_file() and p.name != store.TREE_STAMP]


def decompressed(path: Path) -> bytes:
    source = SeekableZstd(LocalFile(path))
    try:
        return source.read(0, source.size())
    finally:
        source.close()


# ---------------------------------------------------------------- the seekable format


def test_zstd_gives_the_capture_back_byte_for_byte(tmp_path):
    if shutil.which("zstd") is None:
        pytest.skip("the zstd command is not installed")
    (path,) = [tmp_path / name for name in write_captures(tmp_path, [BASE], seconds=20, pps=400)]
    done = compress_capture(path, frame_bytes=1 << 14)
    zst = Path(f"{path}.zst")
    assert done.frames > 5 and zst.stat().st_size == done.compressed_bytes < path.stat().st_size
    out = subprocess.run(["zstd", "-dc", str(zst)], capture_output=True, check=True).stdout
    assert out == path.read_bytes()
    # every frame holds whole records: each frame starts where a record starts
    table = read_seek_table(LocalFile(zst), str(zst))
    with open_capture(path) as capture:
        starts = {record.offset for record in capture} | {0}
    assert set(table.d_start.tolist()) <= starts


def test_frames_follow_the_traffic_small_where_it_does_not_compress(tmp_path):
    """Encrypted payloads: small frames (a small query decompresses little); plain text: large frames
    at the level asked for (the ratio near the whole file's). ``zstd -dc`` gives it all back."""
    rng = random.Random(3)
    words = b"GET /index.html HTTP/1.1 Host: example.org Accept: text/html Cookie: session user ".split()
    records = []
    for i in range(3000):
        payload = rng.randbytes(1200) if i < 1500 else b" ".join(rng.choice(words) for _ in range(150))[:1200]
        records.append((BASE * NS + i * 1000, ether(udp("10.0.0.1", 443, "10.0.0.2", 50000, payload))))
    path = tmp_path / f"pcap.{BASE}"
    write_pcap(path, records)
    data = path.read_bytes()
    compress_capture(path)
    zst = Path(f"{path}.zst")
    table = read_seek_table(LocalFile(zst), str(zst))
    half = len(data) // 2
    sizes = table.d_size[1:-1]  # the first frame is cut before anything is known, the last by the end
    encrypted, plain = sizes[table.d_start[1:-1] < half - (1 << 19)], sizes[table.d_start[1:-1] > half]
    assert len(encrypted) > 5 and encrypted.max() < (1 << 16) + 1500
    assert len(plain) >= 2 and plain.min() >= 1 << 19
    assert decompressed(zst) == data
    if shutil.which("zstd") is not None:
        out = subprocess.run(["zstd", "-dc", str(zst)], capture_output=True, check=True).stdout
        assert out == data


def test_indexing_a_compressed_capture_streams_it(tmp_path, monkeypatch):
    """Reindexing a ``.zst``: the same index as the raw capture's, its bytes read in bounded chunks
    (peak memory far below the capture's size), nothing left beside it."""
    import tracemalloc

    from engine.index import build as index_build

    rng = random.Random(5)
    path = tmp_path / f"pcap.{BASE}"
    write_pcap(
        path,
        [
            (
                BASE * NS + i * 1000,
                ether(udp(f"10.0.{i % 7}.1", 1000 + i % 50, "10.0.0.2", 53, rng.randbytes(1400))),
            )
            for i in range(6000)
        ],
    )
    build_index(path)  # once before measuring: what a first build loads
    tracemalloc.start()
    try:
        build_index(path)
        _, raw_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expected = Path(f"{path}.idx").read_bytes()
    compress_capture(path, frame_bytes=1 << 16)
    size = path.stat().st_size
    path.unlink()
    Path(f"{path}.idx").unlink()
    zst = Path(f"{path}.zst")
    monkeypatch.setattr(index_build, "STREAM_CHUNK", 1 << 18)
    assert size > 8 * index_build.STREAM_CHUNK
    tracemalloc.start()
    try:
        build_index(zst)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert Path(f"{path}.idx").read_bytes() == expected
    # what the raw capture's build holds (its records' columns, the index), a chunk and the frames
    # kept: not the capture
    assert peak < raw_peak + 2 * index_build.STREAM_CHUNK + (2 << 20) < size, (peak, raw_peak, size)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{path.name}.idx", zst.name]


def test_a_compressed_capture_answers_what_the_raw_one_does(tmp_path):
    tree = make_tree(tmp_path, files=4, packets=2000)
    before = answers(tree)
    summary = tiers.compress_tree(tree.filer_dir, "pcap")
    assert summary.compressed == 3 and summary.compressed_bytes < summary.raw_bytes
    for name, paths in filed_captures(tree.filer_dir).items():
        assert [p.suffix for p in paths] == [".zst"], name
        assert index_is_current(paths[0]) and open_index(paths[0]) is not None
    assert answers(tree) == before
    # the engine's per-record path (the reference) agrees with its fast paths over compressed files
    files = store.captures_for_window(T0 * NS, (T0 + 200) * NS, **tree_of(tree), utc=True)
    assert [f.path.name.endswith(".zst") for f in files] == [True, True, True, False]  # and the live one
    q = FlowQuery(ip_address(A), A_PORT, ip_address(B), B_PORT, T0 * NS, (T0 + 200) * NS, None)
    reference = b"".join(query_captures(files, q, bulk=False))
    assert len(reference) > 10_000 and b"".join(query_captures(files, q)) == reference


def tree_of(tree) -> dict:
    return {"filer_dir": tree.filer_dir, "capture_dir": tree.capture_dir, "prefix": "pcap"}


def test_a_damaged_frame_is_damage_named_in_the_answer(tmp_path):
    tree = make_tree(tmp_path, files=3, packets=3000)
    tiers.compress_tree(tree.filer_dir, "pcap")
    zst = sorted(tree.filer_dir.rglob("pcap.*.zst"))[0]
    table = read_seek_table(LocalFile(zst), str(zst))
    data = bytearray(zst.read_bytes())
    middle = int(table.c_start[len(table.c_start) // 2]) + 20
    data[middle : middle + 8] = b"\xff" * 8
    zst.write_bytes(bytes(data))
    pcaps, _ = answers(tree)
    status, content, damaged = pcaps[0]
    assert status == 200 and damaged == zst.name
    assert content[:4] == b"\xd4\xc3\xb2\xa1"


def test_a_truncated_compressed_capture_is_damage(tmp_path):
    tree = make_tree(tmp_path, files=3, packets=1000)
    tiers.compress_tree(tree.filer_dir, "pcap")
    zst = sorted(tree.filer_dir.rglob("pcap.*.zst"))[0]
    with open(zst, "r+b") as f:
        f.truncate(zst.stat().st_size // 2)
    status, content, damaged = answers(tree)[0][0]
    assert status == 200 and damaged == zst.name


# ---------------------------------------------------------------- filing and compress, with kills


def test_the_filer_files_captures_compressed(tmp_path, settings):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    settings.PAR_DATA_DIR = tmp_path / "data"
    settings.PAR_DATA_DIR.mkdir()
    expected = write_captures(capture_dir, [BASE + 60 * n for n in range(4)])
    del expected[f"pcap.{BASE + 180}"]
    options = FilerOptions(capture_dir, filer_dir, settings.PAR_DATA_DIR, compress="zstd")
    summary = run_pass(options)
    assert summary.files == 3 and not summary.failed
    filed = filed_captures(filer_dir)
    assert sorted(filed) == sorted(expected)
    for name, (path,) in filed.items():
        assert path.name == name + ".zst"
        assert decompressed(path) == expected[name]
        assert index_is_current(path)
    assert hidden_files(filer_dir) == []


def assert_in_one_place(filer_dir: Path, expected: dict[str, bytes], reader=decompressed) -> None:
    filed = filed_captures(filer_dir)
    assert sorted(filed) == sorted(expected)
    for name, paths in filed.items():
        assert len(paths) == 1, f"{name} is in two places: {paths}"
        (path,) = paths
        data = path.read_bytes() if path.name == name else reader(path)
        assert data == expected[name], f"{name} changed"
        assert index_is_current(path), f"{name} has no current index"


@pytest.mark.parametrize("step", ["compressing:2", "moved"])
def test_a_compressing_filer_killed_at_a_step_files_everything_once(tmp_path, step):
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    expected = write_captures(capture_dir, [BASE + 60 * n for n in range(4)])
    del expected[f"pcap.{BASE + 180}"]
    env = filer_env(tmp_path, capture_dir, filer_dir, PAR_COMPRESS="zstd")
    crashed = manage({**env, "PAR_FILER_CRASH_AT": step}, "runfiler", "--jobs", "1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    rerun = manage(env, "runfiler", "--jobs", "1")
    assert rerun.returncode == 0, rerun.stderr
    assert_in_one_place(filer_dir, expected)
    assert [p.name for p in capture_dir.iterdir()] == [f"pcap.{BASE + 180}"]
    assert hidden_files(capture_dir, filer_dir) == []


def raw_tree(tmp_path: Path, files: int = 6) -> tuple[Path, dict[str, bytes]]:
    """Filed raw captures with their indexes (as a filer with PAR_COMPRESS=none leaves them)."""
    filer_dir = tmp_path / "filed"
    expected = {}
    for n in range(files):
        epoch = BASE + 60 * n
        directory = store.hour_dir(filer_dir, epoch, utc=True)
        directory.mkdir(parents=True, exist_ok=True)
        expected.update(write_captures(directory, [epoch], seconds=6, pps=400))
        build_index(directory / f"pcap.{epoch}")
    return filer_dir, expected


@pytest.mark.parametrize("step", ["compressed:3"])
def test_compress_killed_at_a_step_leaves_each_capture_once_when_rerun(tmp_path, step):
    filer_dir, expected = raw_tree(tmp_path)
    env = filer_env(tmp_path, tmp_path, filer_dir)
    crashed = manage({**env, "PAR_FILER_CRASH_AT": step}, "compress")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    rerun = manage(env, "compress")
    assert rerun.returncode == 0, rerun.stderr
    assert_in_one_place(filer_dir, expected)
    assert all(p.name.endswith(".zst") for paths in filed_captures(filer_dir).values() for p in paths)
    assert hidden_files(filer_dir) == []


@pytest.mark.slow
def test_compress_killed_at_random_moments_leaves_each_capture_once(tmp_path):
    filer_dir, expected = raw_tree(tmp_path, files=10)
    env = filer_env(tmp_path, tmp_path, filer_dir)
    kills = kill_at_random_moments(
        tmp_path,
        env,
        "compress",
        "Compressed",
        random.Random(20261207),
        attempts=12,
        longest=0.05,
        between=lambda: assert_in_one_place_or_raw(filer_dir, expected),
        done=lambda: all(p.name.endswith(".zst") for ps in filed_captures(filer_dir).values() for p in ps),
    )
    final = manage(env, "compress")
    assert final.returncode == 0, final.stderr
    assert kills >= 1
    assert_in_one_place(filer_dir, expected)
    assert hidden_files(filer_dir) == [] or all(".zst." in p.name for p in hidden_files(filer_dir)) is False


def kill_at_random_moments(
    tmp_path: Path,
    env: dict[str, str],
    command: str,
    at_work: str,
    rng: random.Random,
    attempts: int,
    longest: float,
    done: Callable[[], bool],
    between: Callable[[], None] = lambda: None,
) -> int:
    """Run ``manage.py command`` again and again, each run killed a random moment (up to ``longest``
    seconds) after its log shows ``at_work``, until ``done()``; ``between()`` checks the tree after
    each run. The number of runs killed."""
    kills = 0
    for attempt in range(attempts):
        log = tmp_path / f"{command}-{attempt}.log"
        process = start_manage(env, command, log=log)
        # strike once it is at work (a capture moved or on the way), a random moment later
        deadline = time.monotonic() + 60
        while process.poll() is None and at_work not in log.read_text():
            if time.monotonic() > deadline:
                break
            time.sleep(0.002)
        time.sleep(rng.uniform(0, longest))
        if process.poll() is None:
            process.kill()
            kills += 1
        process.wait()
        between()
        if done():
            break
    return kills


def assert_in_one_place_or_raw(filer_dir: Path, expected: dict[str, bytes]) -> None:
    """Between runs: every capture readable (raw, or compressed whole), maybe in both (finished by a rerun)."""
    filed = filed_captures(filer_dir)
    assert sorted(filed) == sorted(expected)
    for name, paths in filed.items():
        for path in paths:
            data = path.read_bytes() if path.name == name else decompressed(path)
            assert data == expected[name]


# ---------------------------------------------------------------- the archive (a real S3 server)


@pytest.fixture
def archive(weed_s3: S3Server, monkeypatch):
    """A fresh bucket on the S3 server, the engine reading archived captures from it."""
    bucket = weed_s3.new_bucket()
    for name, value in s3_env(weed_s3).items():
        if name.startswith(("AWS_", "PAR_ARCHIVE")):
            monkeypatch.setenv(name, value)
    archived.configure(weed_s3.endpoint)
    forget_shared_frames()
    return bucket, tiers.ArchiveOptions(bucket, "sensor1/", weed_s3.endpoint, 0.0, 0.0)


def test_archived_captures_answer_exactly_and_flows_touch_no_archive(tmp_path, archive, weed_s3):
    bucket, options = archive
    tree = make_tree(tmp_path, files=4, packets=2000)
    before = answers(tree)
    tiers.compress_tree(tree.filer_dir, "pcap")
    summary = tiers.archive_tree(tree.filer_dir, "pcap", options)
    assert summary.archived == 3 and summary.backlog == 0 and not summary.errors
    filed = filed_captures(tree.filer_dir)
    assert all([p.suffix for p in paths] == [".archived"] for paths in filed.values())
    keys = weed_s3.keys(bucket)
    assert len(keys) == 3 and all(k.startswith("sensor1/") and k.endswith(".zst") for k in keys)
    record = json.loads(next(tree.filer_dir.rglob("*.archived")).read_text())
    assert record["size"] == weed_s3.client().head_object(Bucket=bucket, Key=record["key"])["ContentLength"]
    assert answers(tree) == before
    # /flows over archived hours needs nothing of the archive: the same rows with it unreachable
    archived.configure("http://127.0.0.1:9")
    try:
        with node_client(tree):
            client = Client()
            assert [
                (r.status_code, r.content) for r in (client.get("/flows", p) for p in FLOWS[:1])
            ] == before[1][:1]
    finally:
        archived.configure(weed_s3.endpoint)


def test_flows_over_an_archived_capture_with_icmp_ask_nothing_of_the_archive(tmp_path, archive):
    """ICMP and ICMPv6 rows of /flows come from the index (version 4): an archived capture lists
    them with its archive unreachable, the same rows as the capture gave on the local disk."""
    import types

    import pcapgen as g

    bucket, options = archive
    tree = types.SimpleNamespace(filer_dir=tmp_path / "filed", capture_dir=tmp_path / "pcap")
    tree.capture_dir.mkdir()
    directory = store.hour_dir(tree.filer_dir, BASE, utc=True)
    directory.mkdir(parents=True)
    messages = [
        g.icmp_echo("10.1.0.1", "10.1.0.2", 5, 1),
        g.icmp_echo("10.1.0.2", "10.1.0.1", 5, 1, reply=True),
        g.icmp_echo("2001:db8::1", "2001:db8::2", 7, 1),
        g.icmp_echo("2001:db8::2", "2001:db8::1", 7, 1, reply=True),
        g.icmp_error("192.0.2.254", g.tcp("10.1.0.1", 40000, "10.9.0.9", 80, b"x")),
        g.icmp_error("2001:db8::fe", g.tcp("2001:db8::1", 40001, "2001:db8::99", 443, b"y")),
        g.udp("10.1.0.1", 5353, "10.1.0.2", 53, b"query"),
    ]
    path = directory / f"pcap.{BASE}"
    write_pcap(path, [(BASE * NS + k * 1000, g.ether(m)) for k in range(40) for m in messages])
    build_index(path)
    params = [
        {"start_time": str(BASE), "end_time": str(BASE + 60)},
        {"start_time": str(BASE), "end_time": str(BASE + 60), "proto": "58"},
        {"start_time": str(BASE), "end_time": str(BASE + 60), "proto": "1", "src_port": "8"},
    ]

    def flows() -> list[tuple[int, bytes, str | None]]:
        with node_client(tree):
            client = Client()
            return [
                (r.status_code, r.content, r.get("X-PAR-Damaged"))
                for r in (client.get("/flows", p) for p in params)
            ]

    local = flows()
    assert all(status == 200 and damaged is None for status, _, damaged in local)
    listed = [json.loads(content)["flows"] for _, content, _ in local]
    # echoes and errors of both families, one row per message flow (type and code as ports)
    assert len(listed[1]) == 2 and len(listed[2]) == 1 and len(listed[0]) == 5
    tiers.compress_tree(tree.filer_dir, "pcap")
    assert tiers.archive_tree(tree.filer_dir, "pcap", options).archived == 1
    archived.configure("http://127.0.0.1:9")  # nothing listens there
    try:
        assert flows() == local
    finally:
        archived.configure(options.endpoint)


def test_a_record_left_half_written_by_a_killed_archiver_is_cleaned_by_the_rerun(tmp_path, archive):
    bucket, options = archive
    tree = make_tree(tmp_path, files=3, packets=200)
    before = answers(tree)
    capture = next(p for p in sorted(tree.filer_dir.rglob("pcap.*")) if store.name_epoch(p.name, "pcap"))
    half = capture.parent / f".{capture.name}.archived.4242.tmp"  # as durable.atomic_write names it
    half.write_text('{"bucket": ')
    summary = tiers.archive_tree(tree.filer_dir, "pcap", options)
    assert not summary.errors
    assert hidden_files(tree.filer_dir) == []
    assert answers(tree) == before


def test_an_unreachable_archive_is_a_503_naming_it_and_local_windows_still_answer(tmp_path, archive, caplog):
    bucket, options = archive
    tree = make_tree(tmp_path, files=3, packets=500)
    local_before = answers(tree)[0][-1]
    tiers.archive_tree(tree.filer_dir, "pcap", options)
    archived.configure("http://127.0.0.1:9")  # nothing listens there
    try:
        with node_client(tree), caplog.at_level(logging.DEBUG):
            client = Client()
            response = client.get("/data.pcap", window(T0, T0 + 200))
            assert response.status_code == 503
            assert f"s3://{bucket}/" in response.json()["error"]
            assert "secret" not in response.json()["error"]
            # the query's GET goes to a signed URL: neither it nor the key's id is ever logged
            assert "par-test-access" not in caplog.text and "Signature" not in caplog.text
            # the live file's window needs no archived capture
            live = client.get("/data.pcap", window(T0 + 2 * FILE_SECONDS + 1, T0 + 3 * FILE_SECONDS))
            assert live.status_code == 200 and len(body(live)) > 24, live.content
    finally:
        archived.configure(options.endpoint)
    assert local_before[0] == 200


def test_a_corrupt_archived_object_is_damage(tmp_path, archive, weed_s3):
    bucket, options = archive
    tree = make_tree(tmp_path, files=3, packets=3000)
    tiers.compress_tree(tree.filer_dir, "pcap")
    tiers.archive_tree(tree.filer_dir, "pcap", options)
    record_path = sorted(tree.filer_dir.rglob("*.archived"))[0]
    record = json.loads(record_path.read_text())
    client = weed_s3.client()
    data = bytearray(client.get_object(Bucket=bucket, Key=record["key"])["Body"].read())
    data[200:216] = b"\x00" * 16
    client.put_object(Bucket=bucket, Key=record["key"], Body=bytes(data))
    status, content, damaged = answers(tree)[0][0]
    assert status == 200 and damaged == record_path.name


def test_a_small_query_fetches_only_the_frames_of_its_records(tmp_path, archive):
    bucket, options = archive
    filer_dir = tmp_path / "filed"
    directory = store.hour_dir(filer_dir, BASE, utc=True)
    directory.mkdir(parents=True)
    rng = random.Random(7)
    one = [(BASE * NS + 5000, ether(udp("10.9.9.9", 5353, "10.8.8.8", 53, b"lone query")))]
    noise = [
        (BASE * NS + i * 1000, ether(udp("10.0.0.1", 1000 + i % 50, "10.0.0.2", 80, rng.randbytes(1000))))
        for i in range(10, 6000)
    ]
    path = directory / f"pcap.{BASE}"
    write_pcap(path, one + noise)
    build_index(path)
    tiers.compress_tree(filer_dir, "pcap")
    tiers.archive_tree(filer_dir, "pcap", options)
    (record_path,) = filer_dir.rglob("*.archived")
    q = FlowQuery(ip_address("10.9.9.9"), 5353, ip_address("10.8.8.8"), 53, BASE * NS, (BASE + 60) * NS, None)
    opened = []
    real_open = archived.open_archived

    def watched(p):
        opened.append(real_open(p))
        return opened[-1]

    archived.register_opener(".archived", watched)
    try:
        answer = b"".join(query_captures([record_path], q))
        again = b"".join(query_captures([record_path], q))
    finally:
        archived.configure(options.endpoint)
    assert answer == again == pcap_bytes(one)
    source, second = opened
    assert isinstance(source, SeekableZstd) and len(source.table.c_size) > 10
    fetched = source.inner.bytes_fetched
    # the frame holding the record, in one request (the seek table and the file header are in the
    # record): not the object
    assert source.inner.requests == 1
    assert fetched <= int(source.table.c_size.max())
    # the same frame asked again: kept by the process, no request
    assert second.inner.requests == 0


def test_archive_retention_deletes_objects_and_records_past_their_age(tmp_path, archive, weed_s3):
    bucket, options = archive
    tree = make_tree(tmp_path, files=3, packets=200)
    tiers.archive_tree(tree.filer_dir, "pcap", options)
    assert len(weed_s3.keys(bucket)) == 2
    old = tiers.ArchiveOptions(bucket, options.prefix, options.endpoint, 0.0, max_age_hours=1.0)
    summary = tiers.archive_tree(tree.filer_dir, "pcap", old)
    assert summary.expired == 2
    assert weed_s3.keys(bucket) == []
    assert filed_captures(tree.filer_dir) == {}
    assert list(tree.filer_dir.rglob("*.idx")) == []


@pytest.mark.parametrize("step", ["uploaded:2", "recorded", "removing:2"])
def test_archive_killed_at_a_step_leaves_each_capture_in_one_place(tmp_path, archive, weed_s3, step):
    bucket, options = archive
    filer_dir, expected = raw_tree(tmp_path, files=4)
    env = {
        **filer_env(tmp_path, tmp_path, filer_dir),
        **{k: v for k, v in s3_env(weed_s3).items() if k.startswith(("AWS_", "PAR_ARCHIVE"))},
        "PAR_ARCHIVE_URL": f"s3://{bucket}/sensor1",
        "PAR_ARCHIVE_AFTER": "0",
    }
    manage(env, "compress")
    crashed = manage({**env, "PAR_FILER_CRASH_AT": step}, "archive")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    rerun = manage(env, "archive")
    assert rerun.returncode == 0, rerun.stderr
    assert "secret" not in rerun.stderr + crashed.stderr
    filed = filed_captures(filer_dir)
    assert sorted(filed) == sorted(expected)
    assert all([p.suffix for p in paths] == [".archived"] for paths in filed.values())
    keys = weed_s3.keys(bucket)
    assert len(keys) == len(expected)  # nothing orphaned, nothing twice
    for name, (path,) in filed.items():
        with open_capture(path) as capture:
            assert capture.read(0, capture.size()) == expected[name]
        assert index_is_current(path)
    assert hidden_files(filer_dir) == []


def test_the_loop_compresses_and_archives_and_status_shows_each_tier(tmp_path, archive, weed_s3, settings):
    bucket, options = archive
    filer_dir, expected = raw_tree(tmp_path, files=4)
    settings.PAR_DATA_DIR = tmp_path / "data"
    settings.PAR_DATA_DIR.mkdir()
    (tmp_path / "capture").mkdir()
    opts = FilerOptions(tmp_path / "capture", filer_dir, settings.PAR_DATA_DIR, compress="zstd")
    assert tier_pass(opts).compressed == 4
    # one capture goes back to the raw tier, as a node with PAR_COMPRESS=none would have filed it
    first = sorted(filer_dir.rglob("*.zst"))[0]
    Path(str(first)[:-4]).write_bytes(decompressed(first))
    first.unlink()
    later = tiers.ArchiveOptions(bucket, options.prefix, options.endpoint, after_hours=0.0)
    only_old = BASE + 150  # the first three captures are "older" than this moment
    summary = tiers.archive_tree(filer_dir, "pcap", later, now=only_old)
    assert summary.archived == 3 and len(weed_s3.keys(bucket)) == 3
    with override_settings(
        ROOT_URLCONF="parsite.urls_node",
        PAR_ROLE="node",
        PAR_CAPTURE_DIR=tmp_path / "capture",
        PAR_FILER_DIR=filer_dir,
    ):
        client = Client()
        status = client.get("/status").json()
        metrics = client.get("/metrics").content.decode()
    tiers_seen = status["files"]["tiers"]
    assert tiers_seen["archived"]["files"] == 3 and tiers_seen["compressed"]["files"] == 1
    assert tiers_seen["raw"]["files"] == 0
    assert tiers_seen["archived"]["bytes"] == sum(
        weed_s3.client().head_object(Bucket=bucket, Key=k)["ContentLength"] for k in weed_s3.keys(bucket)
    )
    assert status["files"]["count"] == 4
    assert 'par_tier_files{tier="archived"} 3.0' in metrics
    assert 'par_tier_files{tier="compressed"} 1.0' in metrics
    opts = FilerOptions(
        tmp_path / "capture", filer_dir, settings.PAR_DATA_DIR, compress="zstd", archive=later
    )
    assert tier_pass(opts).archived == 1
    assert len(weed_s3.keys(bucket)) == 4
    assert_in_one_place(filer_dir, expected, reader=lambda p: open_capture(p).read(0, 1 << 30))


def test_credentials_never_reach_a_log_line(tmp_path, archive, caplog):
    bucket, options = archive
    filer_dir, _ = raw_tree(tmp_path, files=2)
    bad = tiers.ArchiveOptions(bucket, "x/", "http://127.0.0.1:9", 0.0, 0.0)
    with caplog.at_level(logging.DEBUG):
        summary = tiers.archive_tree(filer_dir, "pcap", bad)
    assert summary.errors and summary.backlog == 2
    text = caplog.text
    assert "s3://" in text
    assert "par-test-secret" not in text and "par-test-access" not in text
    assert hashlib.sha256(b"").hexdigest() not in text


@pytest.mark.slow
def test_archive_killed_at_random_moments_leaves_each_capture_in_one_place(tmp_path, archive, weed_s3):
    bucket, options = archive
    filer_dir, expected = raw_tree(tmp_path, files=8)
    env = {
        **filer_env(tmp_path, tmp_path, filer_dir),
        **{k: v for k, v in s3_env(weed_s3).items() if k.startswith(("AWS_", "PAR_ARCHIVE"))},
        "PAR_ARCHIVE_URL": f"s3://{bucket}/sensor1",
        "PAR_ARCHIVE_AFTER": "0",
    }
    kills = kill_at_random_moments(
        tmp_path,
        env,
        "archive",
        "Archived",
        random.Random(20261208),
        attempts=10,
        longest=0.2,
        done=lambda: all(
            p.name.endswith(".archived") for ps in filed_captures(filer_dir).values() for p in ps
        ),
    )
    final = manage(env, "archive")
    assert final.returncode == 0, final.stderr
    assert kills >= 1
    filed = filed_captures(filer_dir)
    assert sorted(filed) == sorted(expected)
    assert all([p.suffix for p in paths] == [".archived"] for paths in filed.values())
    assert len(weed_s3.keys(bucket)) == len(expected)  # nothing orphaned, nothing twice
    for name, (path,) in filed.items():
        with open_capture(path) as capture:
            assert capture.read(0, capture.size()) == expected[name]
    assert hidden_files(filer_dir) == []


def test_with_the_archive_outside_the_filer_the_loop_only_compresses_and_manage_archive_archives(
    tmp_path, archive, weed_s3, settings
):
    """PAR_ARCHIVE_IN_FILER=false: par-filer.service (no network) leaves the archive to par-archive.service."""
    bucket, _ = archive
    filer_dir, expected = raw_tree(tmp_path, files=3)
    (tmp_path / "capture").mkdir()
    (tmp_path / "data").mkdir()
    env = {
        **filer_env(tmp_path, tmp_path / "capture", filer_dir),
        **{k: v for k, v in s3_env(weed_s3).items() if k.startswith(("AWS_", "PAR_ARCHIVE"))},
        "PAR_ARCHIVE_URL": f"s3://{bucket}/sensor1",
        "PAR_ARCHIVE_AFTER": "0",
        "PAR_ARCHIVE_IN_FILER": "false",
        "PAR_COMPRESS": "zstd",
    }
    filer = start_manage(env, "runfiler", "--loop", "0.2", "--jobs", "1", log=tmp_path / "filer.log")
    try:
        stats = tmp_path / "data" / "filer-stats.json"
        deadline = time.monotonic() + 60
        while not (stats.exists() and json.loads(stats.read_text()).get("compressed") == 3):
            assert filer.poll() is None and time.monotonic() < deadline, (tmp_path / "filer.log").read_text()
            time.sleep(0.1)  # polling a condition, not a fixed wait
    finally:
        filer.send_signal(signal.SIGTERM)
        filer.wait(timeout=60)
    # The tier pass compressed and did not archive: no request went to the archive.
    assert weed_s3.keys(bucket) == [] and not list(filer_dir.rglob("*.archived"))
    assert json.loads(stats.read_text())["archived"] == 0

    stamp = filer_dir / store.TREE_STAMP
    before = stamp.read_bytes() if stamp.exists() else b""
    run = manage({**env, "PYTHONPROFILEIMPORTTIME": "1"}, "archive")  # what par-archive.service runs
    assert run.returncode == 0, run.stderr
    # The captures changed names: serving processes' listings kept by the tree's stamp end now.
    assert stamp.read_bytes() != before
    # It loads no numba (par-archive.service sets MemoryDenyWriteExecute=true, which numba breaks).
    assert not re.search(r"\| +numba(\.|$)", run.stderr, re.M)
    assert len(weed_s3.keys(bucket)) == len(expected)
    assert all(p.name.endswith(".archived") for paths in filed_captures(filer_dir).values() for p in paths)

    settings.PAR_ARCHIVE_URL = f"s3://{bucket}/sensor1"
    settings.PAR_ARCHIVE_IN_FILER = False
    assert tiers.archive_options(in_filer=True) is None and tiers.archive_options() is not None
    settings.PAR_ARCHIVE_IN_FILER = True
    assert tiers.archive_options(in_filer=True) is not None
