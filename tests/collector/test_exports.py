"""Exports through the API, their jobs run in this process: state, visibility, files, faults."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from collector.jobs import runner, sweep
from collector.jobs.model import Export, State
from collector.models import ApiKey, Node, RequestLog
from pcapgen import ether, pcap_bytes, tcp
from tests.collector.conftest import Actor
from tests.collector.pcapnode import PcapNode

T0 = 978368400
QUERY = {"src_addr": "10.0.0.1", "dst_addr": "10.0.0.2", "start_time": str(T0), "end_time": str(T0 + 60)}
PACKETS = [
    (T0 * 10**9 + i * 1000, ether(tcp("10.0.0.1", 1234, "10.0.0.2", 80, b"x%d" % i * 50))) for i in range(400)
]
BODY = pcap_bytes(PACKETS)


@pytest.fixture
def export_dir(tmp_path, settings) -> Path:
    settings.PAR_EXPORT_DIR = tmp_path / "exports"
    return tmp_path / "exports"


@pytest.fixture
def node1(nodes, export_dir):
    server = PcapNode(BODY)
    Node.objects.filter(pk=1).update(address=server.address)
    yield server
    server.close()


@pytest.fixture
def requeued() -> list[int]:
    return []


def post(api, actor: Actor | None, **params):
    headers = actor.headers if actor else {}
    return api.post(
        "/exports?" + "&".join(f"{k}={v}" for k, v in {**QUERY, **params}.items()), headers=headers
    )


def run(export_id: int, requeued: list[int]) -> str:
    return runner.run(export_id, requeue=requeued.append)


def test_posting_a_query_starts_a_job_and_answers_where_to_follow_it(api, node1, node1_key):
    answer = post(api, node1_key, node_id="1")
    assert answer.status_code == 202, answer.content
    job = answer.json()
    assert answer["Location"] == f"/exports/{job['id']}"
    assert job["state"] == "queued" and job["download"] is None
    assert api.get_as(node1_key, answer["Location"]).json()["state"] == "queued"
    assert node1.requests[0].startswith("HEAD /data.pcap?")  # the estimate, asked before queuing
    row = RequestLog.objects.get()
    assert (row.view, row.method, row.status, row.nodes) == ("export", "POST", 202, "1")


def test_a_form_body_is_read_like_a_query_string(api, node1, node1_key):
    answer = api.post("/exports", {**QUERY, "node_id": "1"}, headers=node1_key.headers)
    assert answer.status_code == 202, answer.content


def test_the_same_query_by_the_same_key_is_the_same_job(api, node1, node1_key, admin_key):
    first = post(api, node1_key, node_id="1").json()
    again = post(api, node1_key, node_id="1")
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    other_window = post(api, node1_key, node_id="1", end_time=str(T0 + 61))
    assert other_window.status_code == 202 and other_window.json()["id"] != first["id"]
    by_admin = post(api, admin_key, node_id="1")
    assert by_admin.status_code == 202 and by_admin.json()["id"] != first["id"]


def test_a_key_sees_only_its_own_jobs_and_an_admin_sees_every_one(api, node1, node1_key, admin_key, nodes):
    other = Actor(*ApiKey.objects.create_key("other analyst", node_ids=[1]))
    mine = post(api, node1_key, node_id="1").json()["id"]
    theirs = post(api, other, node_id="1").json()["id"]
    assert [j["id"] for j in api.get_as(node1_key, "/exports").json()["exports"]] == [mine]
    assert api.get_as(node1_key, f"/exports/{theirs}").status_code == 404
    assert api.get_as(node1_key, f"/exports/{theirs}/data.pcap").status_code == 404
    assert api.delete(f"/exports/{theirs}", headers=node1_key.headers).status_code == 404
    assert Export.objects.get(pk=theirs).state == "queued"
    assert {j["id"] for j in api.get_as(admin_key, "/exports").json()["exports"]} == {mine, theirs}
    assert api.get_as(admin_key, f"/exports/{theirs}").status_code == 200


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({}, 400, "missing parameter: node_id"),
        ({"node_id": "2"}, 403, "this API key may not query that node"),
        ({"node_id": "1", "dst_port": "65536"}, 400, "invalid dst_port"),
        ({"node_id": "1", "comunity_id": "x"}, 400, "unknown parameter: comunity_id"),
        ({"node_id": "9"}, 403, "this API key may not query that node"),
    ],
)
def test_an_export_is_validated_and_authorised_as_data_pcap_is(
    api, node1, node1_key, params, status, message
):
    answer = post(api, node1_key, **params)
    assert answer.status_code == status
    assert answer.json()["error"].startswith(message)
    assert not Export.objects.exists()
    assert RequestLog.objects.get().status == status


def test_no_key_is_a_401(api, node1):
    assert post(api, None, node_id="1").status_code == 401
    assert api.get("/exports").status_code == 401


def test_a_key_runs_at_most_par_key_exports_jobs_at_once(api, node1, node1_key, settings):
    settings.PAR_KEY_EXPORTS = 2
    for end in (1, 2):
        assert post(api, node1_key, node_id="1", end_time=str(T0 + end)).status_code == 202
    refused = post(api, node1_key, node_id="1", end_time=str(T0 + 3))
    assert refused.status_code == 429
    assert "PAR_KEY_EXPORTS" in refused.json()["error"]


def test_an_estimate_over_par_export_max_bytes_is_a_413_unless_limit_bytes_bounds_it(
    api, node1, node1_key, settings
):
    settings.PAR_EXPORT_MAX_BYTES = len(BODY) - 1
    refused = post(api, node1_key, node_id="1")
    assert refused.status_code == 413
    assert "PAR_EXPORT_MAX_BYTES" in refused.json()["error"]
    assert post(api, node1_key, node_id="1", limit_bytes="1000").status_code == 202


def test_a_node_s_part_over_what_a_node_sends_at_once_is_a_413_naming_it(api, node1, node1_key, settings):
    settings.PAR_MAX_ANSWER_BYTES = len(BODY) - 1
    refused = post(api, node1_key, node_id="1")
    assert refused.status_code == 413
    assert refused.json()["error"].startswith("node 1's part is estimated at")


def test_a_job_writes_the_nodes_answer_to_a_private_file_served_with_ranges(
    api, node1, node1_key, export_dir, requeued
):
    job = post(api, node1_key, node_id="1").json()
    assert api.get_as(node1_key, f"/exports/{job['id']}/data.pcap").status_code == 409
    assert run(job["id"], requeued) == "done"
    done = api.get_as(node1_key, f"/exports/{job['id']}").json()
    assert (done["state"], done["bytes"], done["packets"], done["progress"]) == ("done", len(BODY), 400, 1.0)
    assert done["sha256"] == hashlib.sha256(BODY).hexdigest()
    assert done["nodes"] == {"1": "done"}
    assert done["download"] == f"/exports/{job['id']}/data.pcap"
    (path,) = export_dir.iterdir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    whole = api.get_as(node1_key, done["download"])
    assert whole.status_code == 200 and b"".join(whole.streaming_content) == BODY
    assert whole["ETag"] == f'"{done["sha256"]}"' and whole["Accept-Ranges"] == "bytes"
    part = api.get_as(node1_key, done["download"], headers={"Range": "bytes=1000-"})
    assert part.status_code == 206 and b"".join(part.streaming_content) == BODY[1000:]
    assert part["Content-Range"] == f"bytes 1000-{len(BODY) - 1}/{len(BODY)}"
    tail = api.get_as(node1_key, done["download"], headers={"Range": "bytes=-10"})
    assert b"".join(tail.streaming_content) == BODY[-10:]
    stale = api.get_as(node1_key, done["download"], headers={"Range": "bytes=10-", "If-Range": '"old"'})
    assert stale.status_code == 200
    beyond = api.get_as(node1_key, done["download"], headers={"Range": f"bytes={len(BODY)}-"})
    assert beyond.status_code == 416 and beyond["Content-Range"] == f"bytes */{len(BODY)}"
    row = RequestLog.objects.filter(view="export", method="GET").order_by("id").first()
    assert row is not None and (row.status, row.bytes_sent) == (200, len(BODY))


def test_deleting_a_finished_job_removes_its_file_and_its_download_is_gone(
    api, node1, node1_key, export_dir, requeued
):
    job = post(api, node1_key, node_id="1").json()
    run(job["id"], requeued)
    assert api.delete(f"/exports/{job['id']}", headers=node1_key.headers).status_code == 204
    assert api.get_as(node1_key, f"/exports/{job['id']}").json()["state"] == "deleted"
    assert list(export_dir.iterdir()) == []
    assert api.get_as(node1_key, f"/exports/{job['id']}/data.pcap").status_code == 410
    # the same query again is a new job: a deleted one holds it no more
    assert post(api, node1_key, node_id="1").status_code == 202


def test_a_node_failing_is_retried_a_bounded_number_of_times_then_failed(
    api, node1, node1_key, settings, requeued, dead_address
):
    settings.PAR_EXPORT_ATTEMPTS = 2
    job = post(api, node1_key, node_id="1").json()
    Node.objects.filter(pk=1).update(address=dead_address)
    assert run(job["id"], requeued) == "queued"
    assert requeued == [job["id"]]
    first = Export.objects.get(pk=job["id"])
    assert first.state == "queued" and first.error.startswith("attempt 1 of 2 failed")
    assert run(job["id"], requeued) == "failed"
    failed = Export.objects.get(pk=job["id"])
    assert failed.state == "failed" and failed.attempts == 2
    assert failed.error.startswith("failed after 2 attempts: there was a problem requesting from the node")


def test_a_revoked_key_s_job_fails_without_asking_the_nodes(api, node1, node1_key, requeued):
    job = post(api, node1_key, node_id="1").json()
    asked = len(node1.requests)
    ApiKey.objects.filter(pk=node1_key.row.pk).update(active=False)
    assert run(job["id"], requeued) == "failed"
    assert "no longer valid" in Export.objects.get(pk=job["id"]).error
    assert len(node1.requests) == asked and requeued == []


def test_a_dead_worker_s_job_is_retried_then_failed_when_attempts_run_out(
    api, node1, node1_key, settings, requeued
):
    settings.PAR_EXPORT_ATTEMPTS = 2
    job = post(api, node1_key, node_id="1").json()
    long_ago = timezone.now() - timedelta(seconds=settings.PAR_EXPORT_LEASE + 1)
    for attempt in (1, 2):
        Export.objects.filter(pk=job["id"]).update(state=State.RUNNING, attempts=attempt, heartbeat=long_ago)
        report = sweep.sweep(requeue=requeued.append)
    assert report.failed == [job["id"]] and requeued == [job["id"]]
    failed = Export.objects.get(pk=job["id"])
    assert failed.state == "failed" and "its worker stopped during attempt 2" in failed.error


def test_finished_files_expire_by_age_and_oldest_first_when_the_disk_runs_low(
    api, node1, node1_key, export_dir, requeued, settings
):
    ids = []
    for end in (1, 2, 3):
        job = post(api, node1_key, node_id="1", end_time=str(T0 + end)).json()
        run(job["id"], requeued)
        ids.append(job["id"])
    Export.objects.filter(pk=ids[1]).update(expires=timezone.now() - timedelta(seconds=1))
    assert sweep.sweep(requeue=requeued.append).expired == [ids[1]]
    assert not Export.objects.get(pk=ids[1]).path.exists()
    assert api.get_as(node1_key, f"/exports/{ids[1]}/data.pcap").status_code == 410
    # The disk is low: the oldest file goes first; with room again, no other.
    free = iter([0, 10**12])
    report = sweep.sweep(requeue=requeued.append, free=lambda _: next(free))
    assert report.expired == [ids[0]]
    assert Export.objects.get(pk=ids[2]).state == "done" and Export.objects.get(pk=ids[2]).path.exists()


def test_a_dead_attempt_s_temporary_file_is_removed_by_the_sweep(export_dir, db, settings, requeued):
    export_dir.mkdir()
    leftover = export_dir / ".export-7.pcap.1.tmp"
    leftover.write_bytes(b"partial")
    fresh = export_dir / ".export-8.pcap.1.tmp"
    fresh.write_bytes(b"being written")
    old = time.time() - settings.PAR_EXPORT_LEASE - 5
    os.utime(leftover, (old, old))
    assert sweep.sweep(requeue=requeued.append).removed == [leftover.name]
    assert fresh.exists()


def test_metrics_show_jobs_by_state_bytes_kept_and_the_oldest_queued_job_s_age(
    api, node1, node1_key, requeued
):
    from prometheus_client.parser import text_string_to_metric_families

    done = post(api, node1_key, node_id="1", end_time=str(T0 + 1)).json()
    run(done["id"], requeued)
    queued = post(api, node1_key, node_id="1", end_time=str(T0 + 2)).json()
    Export.objects.filter(pk=queued["id"]).update(created=timezone.now() - timedelta(seconds=90))
    text = api.get("/metrics").content.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("par_export_jobs", (("state", "done"),))] == 1
    assert samples[("par_export_jobs", (("state", "queued"),))] == 1
    assert samples[("par_export_jobs", (("state", "failed"),))] == 0
    assert samples[("par_export_bytes", ())] == len(BODY)
    assert 90 <= samples[("par_export_worker_lag_seconds", ())] < 120


@pytest.mark.parametrize("piece", [1, 7, 100, 4096, len(BODY)])
def test_the_record_walk_counts_whole_records_however_the_bytes_are_cut(piece):
    from collector.jobs.recordwalk import RecordWalk

    walk = RecordWalk()
    for start in range(0, len(BODY), piece):
        walk.feed(BODY[start : start + piece])
    assert (walk.packets, walk.whole()) == (400, True)
    cut = RecordWalk()
    cut.feed(BODY[:-3])
    assert not cut.whole()


def test_the_record_walk_counts_a_pcapng_s_packets_and_refuses_what_is_no_capture():
    from collector.jobs.recordwalk import RecordWalk
    from engine.formats.stream import StreamError
    from pcapgen import pcapng_bytes

    for big_endian in (False, True):
        body = pcapng_bytes([1], [(0, ts, frame) for ts, frame in PACKETS[:50]], big_endian=big_endian)
        walk = RecordWalk()
        for start in range(0, len(body), 333):
            walk.feed(body[start : start + 333])
        assert (walk.packets, walk.whole()) == (50, True)
    walk = RecordWalk()
    walk.feed(body[:-4])
    assert not walk.whole()
    with pytest.raises(StreamError):
        RecordWalk().feed(b"<html>" + b" " * 40)
