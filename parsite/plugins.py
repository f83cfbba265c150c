"""Plugin loading: the plugins enabled in PAR_PLUGINS, imported and validated at start-up.

A plain name in ``PAR_PLUGINS`` is a folder under ``plugins/``; a dotted name
is a full module path, so a plugin may live anywhere on ``sys.path``.

``settings.py`` calls :func:`load_plugins` while it is read: a missing
package, a wrong version or bad metadata stops the process with an
``ImproperlyConfigured`` naming the plugin. Plugins that apply to the running
role become Django apps; the others are validated the same way (one
``PAR_PLUGINS`` fits the whole fleet) but not installed, mounted or listed.
What a plugin and the apps use at run time, ``PluginConfig`` and the registry,
is ``api.plugins`` (``PluginConfig`` is also importable from here, as plugins
written for earlier versions do).
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from api.plugins import ROLES, PluginConfig
from api.version import VERSION

__all__ = ["PluginConfig", "load_plugins", "parse_plugins_config"]

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$"
)
_PLUGIN_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_LINK = re.compile(r"^(?:https?://[^\s/]+\S*|mailto:[^\s@]+@[^\s@]+)$")
_REQUIRED_TEXT = ("verbose_name", "description", "version", "author")


@dataclass(frozen=True)
class LoadedPlugins:
    """What settings.py needs: the apps to install and each plugin's settings in effect."""

    apps: list[str] = field(default_factory=list)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)


def module_path(entry: str) -> str:
    """``sysinfo`` -> ``plugins.sysinfo``; a dotted entry is already a module path."""
    return entry if "." in entry else f"plugins.{entry}"


def parse_plugins_config(raw: str, variable: str = "PAR_PLUGINS_CONFIG") -> dict[str, dict[str, Any]]:
    """``{"<plugin id>": {"<setting>": value}}`` from JSON; empty means none."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{variable} is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ImproperlyConfigured(
            f'{variable} must be a JSON object like {{"<plugin id>": {{"<setting>": ...}}}}'
        )
    return value


def load_plugins(entries: list[str], user_settings: dict[str, dict], *, role: str) -> LoadedPlugins:
    """Import and validate every plugin of ``entries``; raise ImproperlyConfigured naming the first bad one."""
    loaded = LoadedPlugins()
    seen: dict[str, str] = {}
    for entry in entries:
        config = import_plugin(entry)
        validate(entry, config)
        plugin_id = _label(config)
        if plugin_id in seen:
            raise ImproperlyConfigured(
                f"plugin {entry!r}: id {plugin_id!r} is already taken by plugin {seen[plugin_id]!r}"
            )
        seen[plugin_id] = entry
        loaded.settings[plugin_id] = effective_settings(entry, config, user_settings.get(plugin_id, {}))
        if role in config.roles:
            loaded.apps.append(f"{config.__module__}.{config.__qualname__}")
    unknown = sorted(set(user_settings) - set(seen))
    if unknown:
        raise ImproperlyConfigured(
            f"PAR_PLUGINS_CONFIG configures {', '.join(map(repr, unknown))}, which PAR_PLUGINS does not enable"
        )
    return loaded


def import_plugin(entry: str) -> type[PluginConfig]:
    """The ``config`` class of the plugin package named by ``entry``."""
    path = module_path(entry)
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError as exc:
        if exc.name and (path == exc.name or path.startswith(exc.name + ".")):
            where = "a folder under plugins/" if "." not in entry else "an importable module path"
            raise ImproperlyConfigured(
                f"plugin {entry!r}: no package {path} (PAR_PLUGINS names {where})"
            ) from None
        raise ImproperlyConfigured(f"plugin {entry!r}: importing {path} failed: {exc}") from exc
    except Exception as exc:  # a broken plugin must name itself, whatever it raised
        raise ImproperlyConfigured(
            f"plugin {entry!r}: importing {path} failed: {type(exc).__name__}: {exc}"
        ) from exc
    config = getattr(module, "config", None)
    if not (isinstance(config, type) and issubclass(config, PluginConfig)):
        raise ImproperlyConfigured(
            f"plugin {entry!r}: {path} must set `config` to its subclass of api.plugins.PluginConfig"
        )
    return config


def validate(entry: str, config: type[PluginConfig]) -> None:
    """Check a plugin's metadata; one ImproperlyConfigured lists every problem."""
    problems = _metadata_problems(config, module_path(entry))
    if problems:
        raise ImproperlyConfigured(f"plugin {entry!r}: " + "; ".join(problems))


def _metadata_problems(config: type[PluginConfig], path: str) -> list[str]:
    problems = []
    if config.name != path:
        problems.append(f"name must be its module path {path!r}, not {config.name!r}")
    if not _PLUGIN_ID.match(_label(config)):
        problems.append(f"id (label) {_label(config)!r} must be lower-case letters, digits and _")
    for attr in _REQUIRED_TEXT:
        value = getattr(config, attr, None)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{attr} is required")
    if isinstance(config.version, str) and config.version and not _SEMVER.match(config.version):
        problems.append(f"version {config.version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    for attr in ("url", "author_url"):
        value = getattr(config, attr)
        if value and not (isinstance(value, str) and _LINK.match(value)):
            problems.append(f"{attr} {value!r} must be an http(s):// or mailto: address")
    problems += _roles_problems(config.roles)
    problems += _product_version_problems(config)
    problems += _settings_problems(config)
    return problems


def _roles_problems(roles: object) -> list[str]:
    if isinstance(roles, tuple | list | set | frozenset) and roles and set(roles) <= set(ROLES):
        return []
    return [f"roles {roles!r} must name one or both of {', '.join(ROLES)}"]


def _product_version_problems(config: type[PluginConfig]) -> list[str]:
    problems = []
    for attr, bound in (("min_version", "at least"), ("max_version", "at most")):
        value = getattr(config, attr)
        if value is None:
            continue
        if not (isinstance(value, str) and _SEMVER.match(value)):
            problems.append(f"{attr} {value!r} is not a semantic version (MAJOR.MINOR.PATCH)")
            continue
        ours, theirs = version_key(VERSION), version_key(value)
        if (attr == "min_version" and ours < theirs) or (attr == "max_version" and ours > theirs):
            problems.append(f"needs Packets at Rest {bound} {value}, this is {VERSION}")
    return problems


def _settings_problems(config: type[PluginConfig]) -> list[str]:
    problems = []
    if not isinstance(config.default_settings, dict):
        problems.append("default_settings must be a dict")
    for attr in ("required_settings", "secret_settings"):
        value = getattr(config, attr)
        if not (isinstance(value, tuple | list) and all(isinstance(v, str) for v in value)):
            problems.append(f"{attr} must be a tuple of setting names")
    return problems


def effective_settings(entry: str, config: type[PluginConfig], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with what the operator gave: every required setting there, no unknown one."""
    where = f"PAR_PLUGINS_CONFIG[{_label(config)!r}]"
    known = [*config.default_settings, *config.required_settings]
    problems = []
    missing = [name for name in config.required_settings if name not in given]
    if missing:
        problems.append(f"required setting(s) {', '.join(missing)} missing from {where}")
    unknown = [name for name in given if name not in known]
    if unknown:
        # A misspelt setting would otherwise be ignored without a word.
        problems.append(
            f"unknown setting(s) {', '.join(unknown)} in {where} (known: {', '.join(known) or 'none'})"
        )
    values = {**config.default_settings, **given}
    if not problems:
        problems += config.check_settings(values)
    if problems:
        raise ImproperlyConfigured(f"plugin {entry!r}: " + "; ".join(problems))
    return values


def version_key(version: str) -> tuple:
    """A sort key following semantic versioning's precedence (build metadata ignored)."""
    match = _SEMVER.match(version)
    if not match:
        raise ValueError(f"not a semantic version: {version!r}")
    major, minor, patch, pre = match.groups()
    # A pre-release sorts before its release; numeric identifiers before alphanumeric ones.
    pre_key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")) if pre else ()
    return (int(major), int(minor), int(patch), 0 if pre else 1, pre_key)


def _label(config: type[PluginConfig]) -> str:
    return getattr(config, "label", None) or str(config.name).rpartition(".")[2]
