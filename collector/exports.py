"""The request log as CSV, for the admin's export: every column, streamed in flat memory."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from collector.models import RequestLog

# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection); the
# query text is whatever a client sent, so such cells get a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _columns() -> list[str]:
    return [field.attname for field in RequestLog._meta.concrete_fields]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, (list, dict)):
        value = json.dumps(value, separators=(",", ":"))
    text = str(value)
    if text.startswith(_FORMULA_START) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
