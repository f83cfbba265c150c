from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.db import DatabaseError, connection


class CollectorConfig(AppConfig):
    name = "collector"
    verbose_name = "Collector"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        checks.register(check_database, checks.Tags.database)
        from collector import schema  # noqa: F401  (registers the OpenAPI auth extension)


def check_database(app_configs=None, databases=None, **kwargs) -> list[checks.CheckMessage]:
    """A collector keeps keys and nodes in its database: it must be reachable."""
    if settings.PAR_ROLE != "collector" or not databases:
        return []
    try:
        connection.ensure_connection()
    except DatabaseError as exc:
        return [
            checks.Error(
                f"the database is unusable: {exc}",
                hint="Check DATABASE_URL, and that the server is up and the user may connect.",
                id="collector.E001",
            )
        ]
    return []
