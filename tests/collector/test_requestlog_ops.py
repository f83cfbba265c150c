"""Operating the request log: prune it by age, export it as CSV from the admin."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone

from collector.management.commands.prunerequestlog import prune_request_log
from collector.models import RequestLog


def _entry(age_days: float, **fields) -> RequestLog:
    fields = {"key_prefix": "par_abcdefgh", "status": 200, **fields}
    return RequestLog.objects.create(time=timezone.now() - timedelta(days=age_days), **fields)


@pytest.mark.django_db
def test_prune_deletes_only_the_entries_older_than_the_days_given():
    old = [_entry(age) for age in (31, 45, 400)]
    kept = [_entry(age) for age in (0, 1, 29.9)]
    out = io.StringIO()
    call_command("prunerequestlog", "--days", "30", stdout=out)
    assert out.getvalue().startswith("Deleted 3 request log entries older than ")
    assert set(RequestLog.objects.values_list("id", flat=True)) == {e.id for e in kept}
    assert not RequestLog.objects.filter(id__in=[e.id for e in old]).exists()


@pytest.mark.django_db
def test_prune_works_through_more_rows_than_one_batch(monkeypatch):
    monkeypatch.setattr("collector.management.commands.prunerequestlog.BATCH", 3)
    for _ in range(10):
        _entry(10)
    _entry(1)
    deleted, _ = prune_request_log(5)
    assert deleted == 10 and RequestLog.objects.count() == 1


@pytest.mark.parametrize("days", ["0", "-3", "a week"])
def test_prune_refuses_a_number_of_days_that_is_not_one_or_more(days):
    with pytest.raises(CommandError, match="--days"):
        call_command("prunerequestlog", "--days", days)


def test_prune_needs_the_number_of_days():
    with pytest.raises(CommandError, match="--days"):
        call_command("prunerequestlog")


@pytest.fixture
def staff(client, db):
    client.force_login(User.objects.create_superuser("root", "root@example.org", "a long passphrase 42"))
    return client


def _export(staff, entries) -> tuple[object, list[dict]]:
    answer = staff.post(
        "/admin/collector/requestlog/",
        {"action": "export_csv", "_selected_action": [str(e.pk) for e in entries]},
    )
    body = b"".join(answer.streaming_content).decode() if answer.streaming else answer.content.decode()
    return answer, list(csv.DictReader(io.StringIO(body)))


def test_the_admin_exports_the_selected_entries_as_csv(staff):
    first = _entry(2, src_addr="10.0.0.1", src_port=40000, dst_addr="10.0.0.2", dst_port=80, bytes_sent=4096)
    second = _entry(1, status=502, error="node unreachable", client_ip="192.0.2.9")
    _entry(0)  # not selected
    answer, rows = _export(staff, [second, first])
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/csv")
    assert answer["Content-Disposition"].startswith('attachment; filename="par-request-log-')
    assert [row["id"] for row in rows] == [str(first.pk), str(second.pk)]  # oldest first
    assert rows[0]["src_addr"] == "10.0.0.1" and rows[0]["bytes_sent"] == "4096"
    assert rows[1]["status"] == "502" and rows[1]["error"] == "node unreachable"
    assert rows[1]["client_ip"] == "192.0.2.9"
    assert rows[0]["time"].endswith("+00:00")
    assert {"time", "key_prefix", "status", "bytes_sent", "duration", "client_ip"} <= set(rows[0])


def test_the_export_defuses_cells_a_spreadsheet_would_run(staff):
    entry = _entry(1, error='=HYPERLINK("http://evil")', bytes_sent=0)
    _, rows = _export(staff, [entry])
    assert rows[0]["error"] == '\'=HYPERLINK("http://evil")'
    assert rows[0]["bytes_sent"] == "0"


def test_the_export_is_for_staff_only(client, db):
    entry = _entry(1)
    answer = client.post(
        "/admin/collector/requestlog/", {"action": "export_csv", "_selected_action": [entry.pk]}
    )
    assert answer.status_code == 302 and "/admin/login/" in answer["Location"]
