"""sysinfo: what an operator checks when a sensor drops packets (the seed's facter plugin, in Python).

``GET /plugins/sysinfo/`` answers the host's OS, kernel, CPUs, memory, uptime,
load, the kernel's softnet backlog counters and every network interface with
its counters, read from /proc and /sys (see ``probe.py``).
"""

from __future__ import annotations

from typing import Any

from api.plugins import PluginConfig


class SysinfoConfig(PluginConfig):
    name = "plugins.sysinfo"
    label = "sysinfo"
    verbose_name = "System information"
    description = "OS, kernel, CPUs, memory, uptime, load and network interface counters of this host"
    version = "1.0.0"
    author = "Packets at Rest"
    roles = ("node", "collector")
    min_version = "1.0.0"
    # fnmatch patterns of the interfaces to show; e.g. ["eth*", "ens*"] to hide veths and bridges.
    default_settings = {"interfaces": ["*"]}

    @classmethod
    def check_settings(cls, values: dict[str, Any]) -> list[str]:
        patterns = values["interfaces"]
        if isinstance(patterns, str) or (
            isinstance(patterns, list) and patterns and all(isinstance(p, str) for p in patterns)
        ):
            return []
        return [f'interfaces must be a pattern or a list of patterns like ["eth*"], not {patterns!r}']


config = SysinfoConfig
