"""The plugin framework the apps use: a plugin's ``PluginConfig``, the registry, its metadata and settings.

A plugin is a package whose ``__init__.py`` defines a :class:`PluginConfig`
subclass and exports it as ``config`` (NetBox's model). The project's start-up
(``parsite.plugins``) imports and validates the plugins ``PAR_PLUGINS`` names
and installs those of the running role as Django apps; after ``django.setup()``
the registry is a tuple read from the app registry, which Django never changes
again.

This module is imported while the settings are read, so it imports nothing that
reads settings at import time (no DRF here).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings

ROLES = ("collector", "node")
HIDDEN = "********"
_ROOT = Path(__file__).resolve().parent.parent


class PluginConfig(AppConfig):
    """A plugin: a Django app plus the metadata ``GET /plugins`` shows.

    Django's own attributes keep their meaning: ``name`` is the package's module
    path, ``label`` the plugin's id (its URL prefix ``/plugins/<id>/``),
    ``verbose_name`` its display name.
    """

    description: str = ""
    version: str = ""  # semantic version of the plugin, MAJOR.MINOR.PATCH
    author: str = ""
    author_url: str = ""  # https://... or mailto:...
    url: str = ""  # the plugin's home page
    roles: tuple[str, ...] = ROLES  # where it applies: "collector", "node" or both
    min_version: str | None = None  # oldest Packets at Rest it runs on
    max_version: str | None = None  # newest Packets at Rest it runs on
    default_settings: dict[str, Any] = {}
    required_settings: tuple[str, ...] = ()  # must be given in PAR_PLUGINS_CONFIG
    secret_settings: tuple[str, ...] = ()  # shown as ******** by GET /plugins
    urls: str = "api.urls"  # module, under the package, whose urlpatterns go under /plugins/<id>/

    @classmethod
    def check_settings(cls, values: dict[str, Any]) -> list[str]:
        """Problems with the settings in effect (checked at start-up); a plugin overrides this."""
        return []

    def metadata(self) -> dict[str, Any]:
        """The seed's fields: ``{id, name, description, url, author, author_url, version, settings, directory}``."""
        return {
            "id": self.label,
            "name": str(self.verbose_name),
            "description": self.description,
            "url": self.url or None,
            "author": self.author,
            "author_url": self.author_url or None,
            "version": self.version,
            "settings": self.shown_settings(),
            "directory": _shown_directory(Path(self.path)),
        }

    def shown_settings(self) -> dict[str, Any] | None:
        """This plugin's settings as in effect, secrets hidden; None when it has none."""
        values = settings.PAR_PLUGINS_CONFIG.get(self.label) or {}
        if not values:
            return None
        return {key: HIDDEN if key in self.secret_settings else value for key, value in values.items()}


def _shown_directory(path: Path) -> str:
    """The plugin's folder, relative to the project when it lives inside it."""
    try:
        return str(path.resolve().relative_to(_ROOT))
    except ValueError:
        return str(path)


@functools.cache
def registry() -> tuple[PluginConfig, ...]:
    """The plugins of this role, in PAR_PLUGINS order; fixed once apps are loaded."""
    apps.check_apps_ready()
    return tuple(app for app in apps.get_app_configs() if isinstance(app, PluginConfig))


def plugin_metadata() -> list[dict]:
    """``[{id, name, description, url, author, author_url, version, settings, directory}]``."""
    return [plugin.metadata() for plugin in registry()]


def plugin_setting(plugin_id: str, name: str) -> Any:
    """One setting of a plugin as in effect (PAR_PLUGINS_CONFIG over the plugin's defaults)."""
    return settings.PAR_PLUGINS_CONFIG[plugin_id][name]
