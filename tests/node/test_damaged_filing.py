"""The filer indexes a damaged capture up to the damage and logs it once, naming the file and offset."""

from __future__ import annotations

import logging

from engine.index import open_index
from node.filer import index_into
from tests.engine.test_damage import GOOD, damaged_pcapng


def test_a_damaged_capture_is_filed_with_an_index_up_to_the_damage_and_one_log_line(tmp_path, caplog):
    data, at = damaged_pcapng()
    src = tmp_path / "pcap.1700000000"
    src.write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="node.filer"):
        assert index_into(src, src) == (True, GOOD)
    lines = [r.getMessage() for r in caplog.records if str(src) in r.getMessage()]
    assert len(lines) == 1 and f"damaged at byte offset {at}" in lines[0]
    assert open_index(src).damaged_at == at
