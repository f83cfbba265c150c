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


class FlowRowSerializer(serializers.Serializer):
    node = serializers.CharField(required=False, help_text="the node that saw it (collector answers)")
    proto = serializers.IntegerField(help_text="IP protocol number")
    src_addr = serializers.IPAddressField()
    src_port = serializers.IntegerField(help_text="for ICMP: the message type")
    dst_addr = serializers.IPAddressField()
    dst_port = serializers.IntegerField(help_text="for ICMP: the reply's type, or the code")
    community_id = serializers.CharField(help_text="Community ID v1, seed 0")
    first = serializers.DateTimeField(help_text="its first packet in the files read (ISO 8601, UTC, ns)")
    last = serializers.DateTimeField(help_text="its last packet in the files read")
    packets = serializers.IntegerField()
    bytes = serializers.IntegerField(help_text="original lengths, summed")
    approximate = serializers.BooleanField(
        required=False, help_text="true when the counts may include packets outside the window"
    )


class FlowWindowSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()


class FlowsSerializer(serializers.Serializer):
    window = FlowWindowSerializer()
    flows = FlowRowSerializer(many=True)
    truncated = serializers.BooleanField(help_text="true when more flows matched than limit")
    failed = serializers.DictField(child=serializers.CharField(), help_text="node id -> why it failed")
    histogram = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        help_text="bytes of every flow matched (listed or not) in 60 equal slices of the window, each"
        " flow's spread over its first..last; absent when a node answering sent none",
    )
