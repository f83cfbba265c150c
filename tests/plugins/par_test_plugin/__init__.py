"""A plugin that lives in tests/: enabled as PAR_PLUGINS=tests.plugins.par_test_plugin."""

from __future__ import annotations

from api.plugins import PluginConfig


class ParTestPluginConfig(PluginConfig):
    name = "tests.plugins.par_test_plugin"
    verbose_name = "Test plugin for Packets at Rest"
    description = "proves registration, routing, metadata and the role's checks"
    url = "https://example.org/par_test_plugin"
    author = "Packets at Rest tests"
    author_url = "mailto:tests@example.org"
    version = "0.1.2"
    min_version = "1.0.0"
    default_settings = {"greeting": "hello", "token": "not-for-clients"}
    secret_settings = ("token",)


config = ParTestPluginConfig
