#!/usr/bin/env python3
"""Django's command-line utility for Packets at Rest."""

import gc
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parsite.settings")
    if len(sys.argv) == 2 and sys.argv[1] == "--version":
        from api.version import API_VERSION, VERSION

        print(f"Packets at Rest {VERSION} (API {API_VERSION})")
        return
    from django.core.management import execute_from_command_line

    refuse_bad_settings(os.path.basename(sys.argv[0]))
    try:
        execute_from_command_line(sys.argv)
    finally:
        # The process ends here: its objects are left to the OS instead of being collected one by one
        # at exit, which costs 0.2-0.3 s of CPU once an index build has loaded numba (its compiler's
        # object graph is large): a cron-run filer pays it every pass.
        gc.freeze()


def refuse_bad_settings(program: str) -> None:
    """Stop with one line naming the setting when the settings cannot load, not a traceback."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018  (loads parsite.settings, which checks the environment)
    except ImproperlyConfigured as exc:
        print(f"{program}: Packets at Rest cannot start: ImproperlyConfigured: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
