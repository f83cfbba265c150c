#!/usr/bin/env python3
"""Django's command-line utility for Packets at Rest."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parsite.settings")
    if len(sys.argv) == 2 and sys.argv[1] == "--version":
        from api.version import API_VERSION, VERSION

        print(f"Packets at Rest {VERSION} (API {API_VERSION})")
        return
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
