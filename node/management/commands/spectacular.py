"""manage.py spectacular on a node: drf-spectacular's command (the node's OpenAPI document to a file).

drf-spectacular is no installed app of a node (parsite/settings.py: its filer's processes never
load it), so its command is offered here; it is imported only when it runs.
"""

from drf_spectacular.management.commands.spectacular import Command

__all__ = ["Command"]
