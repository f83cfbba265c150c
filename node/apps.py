from __future__ import annotations

import os

from django.apps import AppConfig
from django.conf import settings
from django.core import checks


class NodeConfig(AppConfig):
    name = "node"
    verbose_name = "Sensor node"

    def ready(self) -> None:
        checks.register(check_node_directories, "node")
        from engine.index import on_damaged_index

        on_damaged_index(index_damaged)

        from engine.formats import archived

        # Archived captures (<name>.archived) are read from this endpoint, whatever PAR_ARCHIVE_URL.
        archived.configure(settings.PAR_ARCHIVE_ENDPOINT, on_fetch=count_archive_fetch)


def index_damaged(path: str, problem: str) -> None:
    """A damaged index found (node/indexdamage.py): prometheus is loaded by the first one only,
    not by every process that sets up a node (a filer's cron pass among them)."""
    from node.indexdamage import index_damaged as report

    report(path, problem)


def count_archive_fetch(size: int, ok: bool) -> None:
    """An archive request of a read, counted for GET /metrics (prometheus loaded on the first one only)."""
    from node.metrics import ARCHIVE_FETCHED, ARCHIVE_REQUESTS

    ARCHIVE_REQUESTS.labels("ok" if ok else "failed").inc()
    if size:
        ARCHIVE_FETCHED.inc(size)


def check_node_directories(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """A node needs its capture directory readable and its filer directory writable."""
    if settings.PAR_ROLE != "node":
        return []
    errors: list[checks.CheckMessage] = []
    dirs = (
        (
            "node.E001",
            "PAR_CAPTURE_DIR",
            settings.PAR_CAPTURE_DIR,
            "point it at the capture tool's directory",
        ),
        ("node.E002", "PAR_FILER_DIR", settings.PAR_FILER_DIR, "the filer moves captures and indexes there"),
    )
    mode = os.R_OK | os.W_OK | os.X_OK
    for check_id, name, path, purpose in dirs:
        if not path.is_dir():
            errors.append(
                checks.Error(
                    f"{name} {path} does not exist or is not a directory",
                    hint=f"Create it: {purpose}.",
                    id=check_id,
                )
            )
        elif not os.access(path, mode):
            errors.append(
                checks.Error(
                    f"{name} {path} is not readable and writable by this user",
                    hint="The node moves and reads files there: fix its owner or mode.",
                    id=check_id,
                )
            )
    if not settings.PAR_NODE_ALLOW:
        errors.append(
            checks.Warning(
                "PAR_NODE_ALLOW is empty: this node answers nobody",
                hint="List the collectors' addresses, e.g. PAR_NODE_ALLOW=10.0.0.2/32.",
                id="node.W001",
            )
        )
    return errors
