"""manage.py createapikey --name NAME [--admin] [--all-nodes] [--nodes 1,2]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from collector.models import ApiKey, NoSuchNodes, parse_node_id


def parse_node_ids(text: str) -> list[int]:
    ids = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            ids.append(parse_node_id(part))
        except ValueError as exc:
            raise CommandError(f"--nodes: {exc} (use --admin for the seed's node 0)") from None
    return ids


def create_key(name: str, **grants) -> tuple[ApiKey, str]:
    """``ApiKey.objects.create_key`` with a missing node as a CommandError."""
    try:
        return ApiKey.objects.create_key(name, **grants)
    except NoSuchNodes as exc:
        raise CommandError(f"{exc} (add it in the admin or importconfig)") from None


class Command(BaseCommand):
    help = "Create an API key and print it once (on stdout; the details go to stderr)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--name", required=True, help="what the key is for")
        parser.add_argument("--owner", default="", help="who answers for the key")
        parser.add_argument("--admin", action="store_true", help="every node, and the key list")
        parser.add_argument("--all-nodes", action="store_true", help="every node")
        parser.add_argument("--nodes", default="", help="comma-separated node ids, e.g. 1,2")

    def handle(
        self, *args, name: str, owner: str, admin: bool, all_nodes: bool, nodes: str, **options
    ) -> None:
        if not name.strip():
            raise CommandError("--name must not be empty")
        row, key = create_key(
            name.strip(), admin=admin, all_nodes=all_nodes, node_ids=parse_node_ids(nodes), owner=owner
        )
        grants = "admin" if admin else "all nodes" if all_nodes else f"nodes {nodes or 'none'}"
        self.stderr.write(f"Created API key {row.name!r} ({grants}), shown as {row.prefix}. Keep it now:")
        self.stdout.write(key)
