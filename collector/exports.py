"""The request log as CSV, for the admin's export: every column, streamed in flat memory."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from api.spreadsheet import safe_cell
from collector.models import RequestLog


def _columns() -> list[str]:
    return [field.attname for field in RequestLog._meta.concrete_fields]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, (list, dict)):
        value = json.dumps(value, separators=(",", ":"))
    return safe_cell(str(value))  # the query text is whatever a client sent


class _Line:
    """A file-like object whose write() hands the line back: csv.writer into a generator."""

    def write(self, value: str) -> str:
        return value


def csv_rows(queryset: QuerySet[RequestLog]) -> Iterator[str]:
    columns = _columns()
    writer = csv.writer(_Line())
    yield writer.writerow(columns)
    for values in queryset.order_by("time", "id").values_list(*columns).iterator(chunk_size=2000):
        yield writer.writerow([_cell(v) for v in values])


def request_log_csv(queryset: QuerySet[RequestLog]) -> StreamingHttpResponse:
    """The rows of ``queryset``, oldest first, as a CSV download."""
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response = StreamingHttpResponse(csv_rows(queryset), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="par-request-log-{stamp}.csv"'
    return response
