"""Response shapes shared by both roles, for the OpenAPI document."""

from rest_framework import serializers

from api.flowlisting import FLOW_FIELDS, Shown


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()


class PingSerializer(serializers.Serializer):
    version = serializers.CharField()
    api_version = serializers.CharField()
    uptime = serializers.FloatField(help_text="seconds since this process started")
    date = serializers.DateTimeField()
    role = serializers.ChoiceField(choices=["collector", "node"])


_FIELD_OF_KIND: dict[str, type[serializers.Field]] = {
    "int": serializers.IntegerField,
    "text": serializers.CharField,
    "address": serializers.IPAddressField,
    "time": serializers.DateTimeField,
    "flag": serializers.BooleanField,
}


def _flow_row_field(shown: Shown) -> serializers.Field:
    field = _FIELD_OF_KIND[shown.kind]
    return (
        field(required=shown.required, help_text=shown.help) if shown.help else field(required=shown.required)
    )


# One /flows row, as api.flowlisting.FlowDict declares it.
FlowRowSerializer = type(
    "FlowRowSerializer",
    (serializers.Serializer,),
    {"__module__": __name__, **{name: _flow_row_field(shown) for name, shown in FLOW_FIELDS.items()}},
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
