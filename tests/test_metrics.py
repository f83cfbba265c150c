"""GET /metrics on both roles under real gunicorn, read with prometheus_client's own text parser.

Two workers per server: every count must be the sum over the workers (multiprocess mode), and a
restart starts the counts again from zero.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from pcapgen import ether, tcp, write_pcap
from tests.collector.live import import_config, live_database, manage
from tests.servers import free_port, gunicorn

pytestmark = pytest.mark.slow

A, B = "10.0.0.1", "10.0.0.2"


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample of ``url``/metrics by (name, sorted labels), parsed by prometheus_client."""
    answer = requests.get(f"{url}/metrics", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _captures(capture_dir: Path, now: int) -> int:
    """Two finished capture files (10 and 5 minutes old) and a live one; returns packets in the finished."""
    packets = 0
    for age, count in ((600, 30), (300, 20), (60, 5)):
        start = now - age
        records = [((start + i) * 10**9, ether(tcp(A, 40000, B, 80, b"x" * i, seq=i))) for i in range(count)]
        write_pcap(capture_dir / f"pcap.{start}", records)
        packets += count if age > 60 else 0
    return packets


@pytest.fixture
def node_env(tmp_path) -> dict[str, str]:
    capture, filed = tmp_path / "capture", tmp_path / "filed"
    capture.mkdir()
    filed.mkdir()
    return {"PAR_DATA_DIR": str(tmp_path), "PAR_CAPTURE_DIR": str(capture), "PAR_FILER_DIR": str(filed)}


def test_a_node_reports_its_filer_disks_and_requests_summed_over_workers(node_env, tmp_path):
    now = int(time.time())
    indexed = _captures(Path(node_env["PAR_CAPTURE_DIR"]), now)
    with gunicorn("node", node_env, workers=2) as node:
        before = scrape(node.url)
        assert value(before, "par_filer_files_waiting") == 2
        assert 590 <= value(before, "par_filer_lag_seconds") <= 600 + 120
        assert value(before, "par_filer_passes_total") == 0

        manage({**node_env, "PAR_ROLE": "node"}, "runfiler")
        for _ in range(12):
            assert requests.get(f"{node.url}/routes", timeout=30).status_code == 200
        pcap = requests.get(
            f"{node.url}/data.pcap",
            params={
                **{"src_addr": A, "src_port": "40000", "dst_addr": B, "dst_port": "80"},
                **{"start_time": str(now - 700), "end_time": str(now)},
            },
            timeout=30,
        )
        assert pcap.status_code == 200, pcap.text
        after = scrape(node.url)
        # Whichever worker answered the scrape, it counts what both did.
        for _ in range(3):
            assert value(scrape(node.url), "par_http_requests_total", view="/routes", status="200") == 12

    assert value(after, "par_filer_passes_total") == 1
    assert value(after, "par_filer_files_total") == 2
    assert value(after, "par_filer_indexed_packets_total") == indexed
    assert value(after, "par_filer_index_rate_packets_per_second") > 0
    # A new tree: the hour filed was summarised by the pass, so older hours' catch-up found nothing to do.
    assert value(after, "par_filer_summaries_rewritten_total") == 0
    assert value(after, "par_filer_summaries_catching_up") == 0
    assert value(after, "par_filer_files_waiting") == 0 and value(after, "par_filer_lag_seconds") == 0
    assert value(after, "par_filed_files") == 2
    assert value(after, "par_index_bytes") > 0 and value(after, "par_filed_bytes") > value(
        after, "par_index_bytes"
    )
    for where in ("capture", "filer"):
        assert value(after, "par_disk_free_bytes", dir=where) > 0
        assert value(after, "par_disk_size_bytes", dir=where) >= value(
            after, "par_disk_free_bytes", dir=where
        )
    assert ("par_capture_process_seen", ()) in after
    assert value(after, "par_streamed_bytes_total", view="/data.pcap") == len(pcap.content)
    assert value(after, "par_request_duration_seconds_count", view="/data.pcap") == 1
    assert value(after, "par_request_duration_seconds_bucket", view="/data.pcap", le="+Inf") == 1
    assert list((tmp_path / "metrics-node").glob("counter_*.db")), "the workers' counts are in files"

    # A new start counts from zero; the filer's counts, kept by the filer, stay.
    with gunicorn("node", node_env, workers=2) as node:
        restarted = scrape(node.url)
    assert value(restarted, "par_http_requests_total", view="/routes", status="200") == 0
    assert value(restarted, "par_filer_passes_total") == 1


def test_a_collector_counts_requests_and_each_nodes_errors(tmp_path):
    admin = "54b22f56-9a84-4893-bc70-332e3b5ded66"
    with live_database(tmp_path) as url:
        env = {"DATABASE_URL": url, "PAR_DATA_DIR": str(tmp_path), "PAR_KEY_PEPPER": "metrics-test"}
        import_config(env, tmp_path, {"1": f"127.0.0.1:{free_port()}"}, {admin: ["0"]})
        with gunicorn("collector", env, workers=2) as collector:
            query = {"src_addr": A, "src_port": "40000", "dst_addr": B, "dst_port": "80"}
            query |= {
                "start_time": "2026-01-01 4pm",
                "end_time": "2026-01-01 5pm",
                "node_id": "1",
                "api_key": admin,
            }
            for _ in range(5):
                answer = requests.get(f"{collector.url}/data.pcap", params=query, timeout=30)
                assert answer.status_code == 502
            samples = scrape(collector.url)
    assert value(samples, "par_node_proxy_errors_total", node="1", reason="unreachable") == 5
    assert value(samples, "par_http_requests_total", view="/data.pcap", status="502") == 5
    assert value(samples, "par_request_duration_seconds_count", view="/data.pcap") == 5


@pytest.mark.parametrize(
    ("role", "urlconf"), [("collector", "parsite.urls_collector"), ("node", "parsite.urls_node")]
)
def test_a_scraper_outside_par_metrics_allow_is_refused(role, urlconf, settings):
    with override_settings(
        ROOT_URLCONF=urlconf, PAR_ROLE=role, PAR_METRICS_ALLOW=[], ALLOWED_HOSTS=["testserver"]
    ):
        answer = Client().get("/metrics")
    assert answer.status_code == 403
    assert "PAR_METRICS_ALLOW" in answer.json()["error"]
