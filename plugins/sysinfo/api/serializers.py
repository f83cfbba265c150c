"""The shape of GET /plugins/sysinfo/, for the OpenAPI document."""

from __future__ import annotations

from rest_framework import serializers


class OsSerializer(serializers.Serializer):
    system = serializers.CharField(help_text="e.g. Linux")
    distribution = serializers.CharField(allow_null=True, help_text="PRETTY_NAME of /etc/os-release")
    machine = serializers.CharField(help_text="e.g. x86_64")


class KernelSerializer(serializers.Serializer):
    release = serializers.CharField()
    version = serializers.CharField()


class CpuSerializer(serializers.Serializer):
    count = serializers.IntegerField(allow_null=True, help_text="CPUs of the host")
    usable = serializers.IntegerField(allow_null=True, help_text="CPUs this process may run on")
    model = serializers.CharField(allow_null=True)


class MemorySerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="bytes")
    available = serializers.IntegerField(allow_null=True)
    free = serializers.IntegerField(allow_null=True)
    buffers = serializers.IntegerField(allow_null=True)
    cached = serializers.IntegerField(allow_null=True)
    swap_total = serializers.IntegerField(allow_null=True)
    swap_free = serializers.IntegerField(allow_null=True)


# The keys "1m", "5m", "15m" are not identifiers, so the class is built from a dict.
LoadSerializer = type(
    "LoadSerializer",
    (serializers.Serializer,),
    {
        "1m": serializers.FloatField(help_text="load average over 1 minute"),
        "5m": serializers.FloatField(help_text="over 5 minutes"),
        "15m": serializers.FloatField(help_text="over 15 minutes"),
        "runnable": serializers.IntegerField(help_text="runnable scheduling entities"),
        "tasks": serializers.IntegerField(help_text="all scheduling entities"),
    },
)


class SoftnetSerializer(serializers.Serializer):
    processed = serializers.IntegerField(help_text="packets the kernel's network stack took in")
    dropped = serializers.IntegerField(help_text="packets dropped because a CPU's backlog was full")
    time_squeeze = serializers.IntegerField(help_text="times packet processing ran out of budget")


class RxSerializer(serializers.Serializer):
    bytes = serializers.IntegerField()
    packets = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]  # a field: DRF moves it off the class, Serializer.errors stays
    drops = serializers.IntegerField()
    fifo = serializers.IntegerField()
    frame = serializers.IntegerField()
    compressed = serializers.IntegerField()
    multicast = serializers.IntegerField()


class TxSerializer(serializers.Serializer):
    bytes = serializers.IntegerField()
    packets = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]  # a field: DRF moves it off the class, Serializer.errors stays
    drops = serializers.IntegerField()
    fifo = serializers.IntegerField()
    collisions = serializers.IntegerField()
    carrier = serializers.IntegerField()
    compressed = serializers.IntegerField()


class InterfaceSerializer(serializers.Serializer):
    state = serializers.CharField(allow_null=True, help_text="operstate: up, down, unknown, ...")
    mtu = serializers.IntegerField(allow_null=True)
    mac = serializers.CharField(allow_null=True)
    speed_mbps = serializers.IntegerField(allow_null=True)
    rx = RxSerializer()
    tx = TxSerializer()


class SysinfoSerializer(serializers.Serializer):
    hostname = serializers.CharField()
    date = serializers.DateTimeField()
    os = OsSerializer()
    kernel = KernelSerializer()
    cpu = CpuSerializer(allow_null=True)
    memory = MemorySerializer(allow_null=True)
    uptime = serializers.FloatField(allow_null=True, help_text="seconds since boot")
    load = LoadSerializer(allow_null=True)
    softnet = SoftnetSerializer(allow_null=True)
    interfaces = serializers.DictField(child=InterfaceSerializer(), allow_null=True)
