"""Import of the seed's config/api.conf and config/nodes.conf (JSON) into the database."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction

from collector import keys
from collector.models import ApiKey, Node, normalize_address, parse_node_id

ADMIN_NODE = "0"  # the seed's "every node, and the key list"


class ConfigError(ValueError):
    """A config file does not have the seed's shape; the message says where."""


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"created {item}" for item in self.created]
        out += [f"updated {item}" for item in self.updated]
        out += [f"warning: {item}" for item in self.warnings]
        out.append(
            f"{len(self.created)} created, {len(self.updated)} updated, {len(self.unchanged)} unchanged"
        )
        return out


def _node_id(text: object, where: str) -> int:
    try:
        return parse_node_id(str(text))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def import_nodes(data: object, report: ImportReport) -> None:
    """``{"1": "120.18.0.151", "2": "host:9000"}``: create or update each node's address."""
    if not isinstance(data, dict):
        raise ConfigError("nodes file: a JSON object of node id -> address is required")
    for raw_id, raw_address in data.items():
        node_id = _node_id(raw_id, "nodes file")
        if not isinstance(raw_address, str):
            raise ConfigError(f"nodes file: node {node_id}: the address must be a string")
        try:
            address = normalize_address(raw_address)
        except ValidationError as exc:
            raise ConfigError(f"nodes file: node {node_id}: {exc.messages[0]}") from None
        node = Node.objects.filter(pk=node_id).first()
        if node is None:
            Node.objects.create(id=node_id, address=address)
            report.created.append(f"node {node_id} at {address}")
        elif node.address != address:
            node.address = address
            node.save(update_fields=["address"])
            report.updated.append(f"node {node_id} at {address}")
        else:
            report.unchanged.append(f"node {node_id}")


def import_keys(data: object, report: ImportReport) -> None:
    """``{"<uuid>": ["1", "2"], "<uuid>": ["0"]}``: create each key, or set its grants."""
    if not isinstance(data, dict):
        raise ConfigError("api file: a JSON object of key -> list of node ids is required")
    for position, (raw_key, node_list) in enumerate(data.items(), start=1):
        # Never echo the key itself: name entries by position or shown prefix.
        if not isinstance(raw_key, str) or not keys.is_uuid_key(raw_key.strip()):
            report.warnings.append(f"entry {position} of the api file is not a UUID key: skipped")
            continue
        if not isinstance(node_list, list):
            raise ConfigError(f"api file: entry {position}: a list of node ids is required")
        wanted = {str(item).strip() for item in node_list}
        is_admin = ADMIN_NODE in wanted
        node_ids = {_node_id(item, f"api file: entry {position}") for item in wanted - {ADMIN_NODE}}
        prefix = keys.shown_prefix(raw_key)
        known = set(Node.objects.filter(pk__in=node_ids).values_list("pk", flat=True))
        for missing in sorted(node_ids - known):
            report.warnings.append(f"key {prefix}: node {missing} is not defined, grant skipped")
        _import_key(raw_key, prefix, is_admin, known, report)


def _import_key(raw_key: str, prefix: str, is_admin: bool, node_ids: set[int], report: ImportReport) -> None:
    key = ApiKey.objects.filter(key_hash=keys.key_hash(raw_key)).first()
    if key is None:
        key = ApiKey(name=f"imported {prefix}", admin=is_admin)
        key.set_key(raw_key)
        key.save()
        key.nodes.set(node_ids)
        report.created.append(f"key {prefix} ({_grants(is_admin, node_ids)})")
        return
    current = set(key.nodes.values_list("pk", flat=True))
    if key.admin == is_admin and current == node_ids:
        report.unchanged.append(f"key {prefix}")
        return
    key.admin = is_admin
    key.save(update_fields=["admin"])
    key.nodes.set(node_ids)
    report.updated.append(f"key {prefix} ({_grants(is_admin, node_ids)})")


def _grants(is_admin: bool, node_ids: set[int]) -> str:
    if is_admin:
        return "admin"
    return "nodes " + ", ".join(str(n) for n in sorted(node_ids)) if node_ids else "no node"


@transaction.atomic
def import_config(api: object | None, nodes: object | None) -> ImportReport:
    """Import both files' contents (nodes first: keys refer to them), all or nothing."""
    report = ImportReport()
    if nodes is not None:
        import_nodes(nodes, report)
    if api is not None:
        import_keys(api, report)
    return report
