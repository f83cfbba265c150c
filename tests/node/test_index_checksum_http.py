"""A plausibly damaged index (a flipped address in its flow table) is noticed by its checksum on a real node.

The answer stays exact (the capture is scanned instead), the damage is logged and counted in
/status and /metrics, and ``manage.py reindex`` rebuilds the index.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
import requests

from engine.index import index_is_current, index_path
from engine.index.format import COLUMN, HEADER, HEADER_SIZE
from tests.node.captures import FILE_SECONDS, NS, T0, A, make_tree, window
from tests.node.filing import filer_env, manage
from tests.node.test_api_http import env_for, wait_for
from tests.servers import gunicorn

pytestmark = pytest.mark.slow


def column_at(data: bytes, wanted: str) -> tuple[int, np.dtype, int]:
    """(file offset, dtype, entries) of column ``wanted`` of the index ``data``."""
    columns = HEADER.unpack_from(data)[11]
    at = HEADER_SIZE + COLUMN.size * columns
    at += -at % 8
    for i in range(columns):
        name, dtype, _, count = COLUMN.unpack_from(data, HEADER_SIZE + COLUMN.size * i)
        kind = np.dtype(dtype.rstrip(b"\0").decode())
        if name.rstrip(b"\0").decode() == wanted:
            return at, kind, count
        length = kind.itemsize * count
        at += length + (-length % 8)
    raise KeyError(wanted)


def flip_address(index, old: str, new: str) -> int:
    """Every ``old`` of the IPv4 flow table's ends made ``new``, in place: the index stays well-formed."""
    data = bytearray(index.read_bytes())
    changed = 0
    for name in ("a4", "b4"):
        at, dtype, count = column_at(bytes(data), name)
        values = np.frombuffer(bytes(data), dtype=dtype, count=count, offset=at).copy()
        hits = values == int(ipaddress.IPv4Address(old))
        values[hits] = int(ipaddress.IPv4Address(new))
        data[at : at + values.nbytes] = values.tobytes()
        changed += int(hits.sum())
    index.write_bytes(bytes(data))
    return changed


def test_a_damaged_index_is_noticed_counted_scanned_around_and_rebuilt(tmp_path):
    tree = make_tree(tmp_path, files=3, packets=200)
    damaged = tree.files[0]
    assert flip_address(index_path(damaged), A, "10.9.9.9") > 0
    start, end = T0, T0 + 3 * FILE_SECONDS
    env = env_for(tmp_path, tree.capture_dir, tree.filer_dir, PAR_METRICS_ALLOW="127.0.0.1/32")
    with gunicorn("node", env) as node:
        answer = requests.get(f"{node.url}/data.pcap", params=window(start, end), timeout=30)
        assert answer.status_code == 200
        assert answer.content == tree.expected(start * NS, end * NS)
        again = requests.get(f"{node.url}/data.pcap", params=window(start, end), timeout=30)
        assert again.content == answer.content
        status = requests.get(f"{node.url}/status", timeout=30).json()
        metrics = requests.get(f"{node.url}/metrics", timeout=30).text
        assert wait_for(lambda: "damaged index" in node.log())
        log = node.log()
    assert status["files"]["damaged_indexes"] == 1  # one worker: the file counted once
    assert "par_index_damaged_total 1.0" in metrics
    assert f"damaged index {index_path(damaged)}" in log and log.count("damaged index") == 1

    assert not index_is_current(damaged)
    run = manage(filer_env(tmp_path, tree.capture_dir, tree.filer_dir), "reindex", str(tree.filer_dir))
    assert run.returncode == 0, run.stderr
    assert "Built 1 indexes, 1 already current" in run.stdout + run.stderr
    assert index_is_current(damaged)
