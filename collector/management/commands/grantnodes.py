"""manage.py grantnodes USER [--admin] [--all-nodes] [--nodes 1,2]"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from collector.management.commands.createapikey import parse_node_ids
from collector.models import Node, UserGrant


def grant_nodes(username: str, *, admin: bool, all_nodes: bool, node_ids: list[int]) -> UserGrant:
    """Replace what the account ``username`` may query on the web page; CommandError naming what is missing."""
    try:
        user = get_user_model().objects.get_by_natural_key(username)
    except get_user_model().DoesNotExist:
        raise CommandError(
            f"no such user: {username!r} (create it with createsuperuser or in the admin)"
        ) from None
    found = set(Node.objects.filter(pk__in=node_ids).values_list("id", flat=True))
    missing = sorted(set(node_ids) - found)
    if missing:
        raise CommandError(
            f"no such node: {', '.join(map(str, missing))} (add it in the admin or importconfig)"
        )
    with transaction.atomic():
        grant, _ = UserGrant.objects.get_or_create(user=user)
        grant.admin, grant.all_nodes = admin, all_nodes
        grant.save()
        grant.nodes.set(node_ids)
    return grant


def describe(grant: UserGrant) -> str:
    if grant.admin:
        return "admin: every node, and the list of keys"
    if grant.all_nodes:
        return "every node"
    ids = sorted(node.id for node in grant.nodes.all())
    return f"nodes {', '.join(map(str, ids))}" if ids else "no node"


class Command(BaseCommand):
    help = "Set what a user (a Django account) may query on the web page: admin, every node or some nodes."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username", help="the account's user name")
        parser.add_argument("--admin", action="store_true", help="every node, and the key list")
        parser.add_argument("--all-nodes", action="store_true", help="every node, present and future")
        parser.add_argument("--nodes", default="", help="comma-separated node ids, e.g. 1,2 (empty: none)")

    def handle(self, *args, username: str, admin: bool, all_nodes: bool, nodes: str, **options) -> None:
        grant = grant_nodes(username, admin=admin, all_nodes=all_nodes, node_ids=parse_node_ids(nodes))
        said = f"{grant.user.get_username()} may now query {describe(grant)}"
        if grant.user.is_superuser and not grant.admin:
            said += " (a superuser: the admin grant all the same)"
        self.stdout.write(said)
