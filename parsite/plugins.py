"""The plugin registry: plugins enabled in PAR_PLUGINS, fixed at start-up.

(The plugin machinery fills this in; until then no plugin is registered.)
"""

from __future__ import annotations


def plugin_metadata() -> list[dict]:
    """``[{id, name, description, url, author, author_url, version, settings, directory}]``."""
    return []
