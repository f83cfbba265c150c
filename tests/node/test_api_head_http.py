"""HEAD /data.pcap on a node under gunicorn: the GET's headers, without running the query."""

from __future__ import annotations

import pytest
import requests

from tests.node.captures import make_big_capture, window
from tests.node.test_api_http import env_for, wait_for
from tests.servers import gunicorn

pytestmark = pytest.mark.slow


def test_head_answers_the_gets_headers_without_reading_a_record(tmp_path):
    (tmp_path / "capture").mkdir()
    (tmp_path / "filed").mkdir()
    capture = make_big_capture(tmp_path / "capture", cycles=5_000)
    with gunicorn("node", env_for(tmp_path, tmp_path / "capture", tmp_path / "filed")) as node:
        head = requests.head(f"{node.url}/data.pcap", params=capture.params, timeout=30)
        assert wait_for(lambda: '"HEAD /data.pcap' in node.log())
        log = node.log()
        with requests.get(f"{node.url}/data.pcap", params=capture.params, stream=True, timeout=30) as get:
            assert get.status_code == 200
        for name in ("Content-Type", "Content-Disposition", "Cache-Control"):
            assert head.headers[name] == get.headers[name], name
    assert head.status_code == 200 and head.content == b""
    assert "Content-Length" not in head.headers  # nothing claims the download is empty
    assert "data.pcap" not in log.replace('"HEAD /data.pcap', "")  # no query ran, nothing was served


def test_head_refuses_what_the_get_refuses(tmp_path):
    (tmp_path / "capture").mkdir()
    (tmp_path / "filed").mkdir()
    with gunicorn("node", env_for(tmp_path, tmp_path / "capture", tmp_path / "filed")) as node:
        bad = requests.head(f"{node.url}/data.pcap", params={"start_time": "Monday"}, timeout=10)
        none = requests.head(f"{node.url}/data.pcap", params=window(0, 60), timeout=10)
    assert bad.status_code == 400 and none.status_code == 404
