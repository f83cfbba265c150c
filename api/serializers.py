"""Response shapes shared by both roles, for the OpenAPI document."""

from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()


class PingSerializer(serializers.Serializer):
    version = serializers.CharField()
    api_version = serializers.CharField()
    uptime = serializers.FloatField(help_text="seconds since this process started")
    date = serializers.DateTimeField()
    role = serializers.ChoiceField(choices=["collector", "node"])
