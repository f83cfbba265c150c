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


_refuse_to_start_when_misconfigured()
