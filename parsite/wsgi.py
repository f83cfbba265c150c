"""WSGI entry point: ``gunicorn parsite.wsgi -c gunicorn.conf.py``."""

import io
import logging
import os
import sys

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parsite.settings")

application = get_wsgi_application()


def _refuse_to_start_when_misconfigured() -> None:
    """Run the system checks (database included) and stop with their message."""
    from django.conf import settings
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    databases = ["default"] if settings.PAR_ROLE == "collector" else None
    said = io.StringIO()
    try:
        call_command("check", databases=databases, fail_level="ERROR", stdout=said, stderr=said)
        if "WARNINGS:" in said.getvalue():  # a log line, not bare text (PAR_LOG_FORMAT=json)
            logging.getLogger("parsite").warning("%s", said.getvalue().strip())
    except SystemCheckError as exc:
        _cannot_start(f"\n{exc}")
    if databases:
        missing = unapplied_migrations()
        if missing:
            _cannot_start(
                f" the database lacks {len(missing)} migration(s)"
                f" ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}):"
                " run `manage.py migrate` first (from one collector only)"
            )


def _cannot_start(why: str) -> None:
    """Log why (a JSON line with PAR_LOG_FORMAT=json) and stop: gunicorn's arbiter then stops too."""
    from django.conf import settings

    logging.getLogger("parsite").critical("Packets at Rest (%s) cannot start:%s", settings.PAR_ROLE, why)
    sys.exit(3)  # gunicorn: worker boot error


def unapplied_migrations() -> list[str]:
    """The migrations the database lacks, as ``app.name``: a collector on an older schema answers wrongly."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    connection.close()  # the worker's threads open their own
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]


_refuse_to_start_when_misconfigured()
