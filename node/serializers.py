"""Shapes of the node's answers, for the OpenAPI document."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers


class DirBytesSerializer(serializers.Serializer):
    capturedir = serializers.IntegerField(help_text="bytes used, as du counts them")
    filerdir = serializers.IntegerField(help_text="bytes used, as du counts them")


class FileSystemSerializer(serializers.Serializer):
    total = serializers.IntegerField(allow_null=True)
    used = serializers.IntegerField(allow_null=True)
    free = serializers.IntegerField(allow_null=True, help_text="bytes available to unprivileged writers")
    mount = serializers.CharField(allow_null=True)
    error = serializers.CharField(required=False)


class DiskFreeSerializer(serializers.Serializer):
    capturedir = FileSystemSerializer()
    filerdir = FileSystemSerializer()


class ProcessSerializer(serializers.Serializer):
    name = serializers.CharField()
    pid = serializers.IntegerField()


class LiveFileSerializer(serializers.Serializer):
    name = serializers.CharField()
    started = serializers.DateTimeField(allow_null=True)
    bytes = serializers.IntegerField()
    modified = serializers.DateTimeField(allow_null=True)


class CaptureSerializer(serializers.Serializer):
    running = serializers.BooleanField(allow_null=True, help_text="null where /proc cannot be read")
    name = serializers.CharField(allow_null=True)
    pid = serializers.IntegerField(allow_null=True)
    processes = ProcessSerializer(many=True)
    live_file = LiveFileSerializer(allow_null=True, help_text="the capture file being written")


class FilesSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="filed capture files")
    indexes = serializers.IntegerField(help_text="index files beside them")
    oldest = serializers.DateTimeField(allow_null=True, help_text="start of the oldest filed capture")
    newest = serializers.DateTimeField(
        allow_null=True, help_text="last packet of the newest filed capture (its start without an index)"
    )
    waiting = serializers.IntegerField(help_text="finished captures in the capture directory, not yet filed")
    future = serializers.ListField(
        child=serializers.CharField(),
        help_text="capture files named more than an hour ahead of now: left alone",
    )
    complete = serializers.BooleanField(help_text="false when a walk stopped at its bound")
    errors = serializers.ListField(child=serializers.CharField())  # type: ignore[assignment]  # a field: DRF moves it off the class, Serializer.errors stays


class StatusSerializer(serializers.Serializer):
    hostname = serializers.CharField()
    capturedir = serializers.CharField()
    filerdir = serializers.CharField()
    du = DirBytesSerializer()
    df = DiskFreeSerializer()
    capture = CaptureSerializer()
    files = FilesSerializer()
    system_date = serializers.DateTimeField(help_text="local time of the node")
    utc_datetime = serializers.DateTimeField()


class RouteSerializer(serializers.Serializer):
    path = serializers.CharField()
    methods = serializers.ListField(child=serializers.CharField())
    params = serializers.ListField(child=serializers.CharField(), help_text="path placeholders")
    query = serializers.ListField(child=serializers.CharField(), help_text="query parameters")


class PluginSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    url = serializers.CharField(allow_blank=True, allow_null=True)
    author = serializers.CharField(allow_blank=True, allow_null=True)
    author_url = serializers.CharField(allow_blank=True, allow_null=True)
    version = serializers.CharField(allow_null=True)
    settings = serializers.JSONField(allow_null=True)
    directory = serializers.CharField(allow_null=True)


def _param(name: str, schema: dict, description: str, *, required: bool = True) -> OpenApiParameter:
    return OpenApiParameter(name, schema, OpenApiParameter.QUERY, required=required, description=description)


# What a valid value looks like; the API also reads what these schemas leave out (a bracketed
# IPv6 address, forms like "2001-01-01 5:01pm") and answers anything else with a 400 naming it.
_ADDRESS = {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}], "example": "10.0.0.1"}
_PORT = {"type": "integer", "minimum": 0, "maximum": 65535, "example": 443}
_TIME = {
    "type": "string",
    "anyOf": [{"format": "date-time"}, {"pattern": r"^[0-9]{1,11}(\.[0-9]{1,9})?$"}],
    "example": "2015-02-26T16:00:00Z",
}
_PROTO = {
    "type": "string",
    "anyOf": [{"enum": ["tcp", "udp", "sctp"]}, {"pattern": "^[0-9]{1,3}$"}],
    "example": "tcp",
}

FLOW_PARAMETERS = [
    _param("src_addr", _ADDRESS, "IPv4 or IPv6 address of one end of the flow"),
    _param("src_port", _PORT, "its port"),
    _param("dst_addr", _ADDRESS, "IPv4 or IPv6 address of the other end"),
    _param("dst_port", _PORT, "its port"),
    _param(
        "start_time",
        _TIME,
        "ISO 8601, epoch seconds (fractions exact) or a form like `2001-01-01 5:01pm`; "
        "without a zone UTC (local time when PAR_UTC=false)",
    ),
    _param("end_time", _TIME, "as start_time; inclusive, at most PAR_MAX_WINDOW seconds after it"),
    _param(
        "proto",
        _PROTO,
        "tcp, udp, sctp or an IP protocol number (0-255); default TCP, UDP and SCTP",
        required=False,
    ),
]
