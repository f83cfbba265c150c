"""WSGI entry point: ``gunicorn parsite.wsgi -c gunicorn.conf.py``."""

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
    try:
        call_command("check", databases=databases, fail_level="ERROR")
    except SystemCheckError as exc:
        print(f"Packets at Rest ({settings.PAR_ROLE}) cannot start:\n{exc}", file=sys.stderr)
        sys.exit(3)  # gunicorn: worker boot error, the arbiter stops
    if databases:
        missing = unapplied_migrations()
        if missing:
            print(
                f"Packets at Rest ({settings.PAR_ROLE}) cannot start: the database lacks {len(missing)}"
                f" migration(s) ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}):"
                " run `manage.py migrate` first (from one collector only)",
                file=sys.stderr,
            )
            sys.exit(3)


def unapplied_migrations() -> list[str]:
    """The migrations the database lacks, as ``app.name``: a collector on an older schema answers wrongly."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    connection.close()  # the worker's threads open their own
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]


_refuse_to_start_when_misconfigured()
