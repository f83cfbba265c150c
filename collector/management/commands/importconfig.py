"""manage.py importconfig --api-file api.conf --node-file nodes.conf"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from collector.seedconfig import ConfigError, import_config


def _load(path: str | None) -> object | None:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}")
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}")


class Command(BaseCommand):
    help = "Import the seed's api.conf (keys and their nodes) and nodes.conf (node addresses); idempotent."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--api-file", help="the seed's config/api.conf")
        parser.add_argument("--node-file", help="the seed's config/nodes.conf")

    def handle(self, *args, api_file: str | None, node_file: str | None, **options) -> None:
        if api_file is None and node_file is None:
            raise CommandError("give --api-file, --node-file, or both")
        api, nodes = _load(api_file), _load(node_file)
        try:
            report = import_config(api, nodes)
        except ConfigError as exc:
            raise CommandError(str(exc))
        for line in report.lines():
            self.stdout.write(line)
