"""Shapes of the node's answers, for the OpenAPI document."""

from __future__ import annotations

from rest_framework import serializers

from api.parameters import FLOWS_PARAMETERS, PCAP_PARAMETERS

__all__ = ["FLOWS_PARAMETERS", "FLOW_PARAMETERS", "PCAP_PARAMETERS"]


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
    damaged_indexes = serializers.IntegerField(
        help_text="index files found damaged while serving (each worker counts a file once): scanned "
        "around; `manage.py reindex` rebuilds them"
    )


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


FLOW_PARAMETERS = PCAP_PARAMETERS  # the older name
