"""A test plugin that applies to nodes only: a collector validates it but neither mounts nor lists it."""

from __future__ import annotations

from api.plugins import PluginConfig


class ParNodeOnlyConfig(PluginConfig):
    name = "tests.plugins.par_node_only"
    verbose_name = "Node-only test plugin"
    description = "applies to nodes only"
    author = "Packets at Rest tests"
    version = "1.0.0-rc.1"
    roles = ("node",)


config = ParNodeOnlyConfig
