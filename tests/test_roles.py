"""Each role loads only itself: a node process imports no collector code, a collector none of a node's."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.servers import run

# Set up Django as the role's process does; with ``web``, load every route it serves (views,
# plugins) and start the WSGI application; with ``filer``, run a filing pass as `manage.py runfiler`
# does. Then print the names of the modules loaded.
PROBE = """
import json, sys
import django
django.setup()
if {web!r}:
    from django.urls import get_resolver
    get_resolver().url_patterns
    from django.core.wsgi import get_wsgi_application
    get_wsgi_application()
if {filer!r}:
    from django.core.management import call_command
    call_command("runfiler", "--jobs", "1")
print(json.dumps(sorted(name for name, module in sys.modules.items() if module is not None)))
"""


def loaded_modules(role: str, tmp_path: Path, web: bool = True, filer: bool = False) -> set[str]:
    capture, filed = tmp_path / "pcap", tmp_path / "filed"
    capture.mkdir(exist_ok=True)
    filed.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "parsite.settings",
        "PAR_ROLE": role,
        "PAR_DATA_DIR": str(tmp_path / "data"),
        "PAR_CAPTURE_DIR": str(capture),
        "PAR_FILER_DIR": str(filed),
        "PAR_LOG_LEVEL": "ERROR",
    }
    result = run([sys.executable, "-c", PROBE.format(web=web, filer=filer)], env)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def of(modules: set[str], *packages: str) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


# What only a collector needs: its database's driver, its users and sessions, its login lockout. (A
# node's /schema loads DRF's schema generator, which imports Django's admindocs and admin modules.)
COLLECTOR_ONLY = (
    "collector",
    "axes",
    "psycopg",
    "django.contrib.postgres",
    "django.contrib.sessions",
    "django.contrib.auth.models",
)


def test_a_node_process_imports_nothing_of_the_collector(tmp_path):
    modules = loaded_modules("node", tmp_path, filer=True)
    assert "node.views" in modules and "node.filer" in modules
    assert of(modules, *COLLECTOR_ONLY) == []


def test_the_filer_loads_no_web_framework(tmp_path):
    # Every cron pass of the filer pays its start-up: no REST framework views, no OpenAPI, no HTTP client.
    modules = loaded_modules("node", tmp_path, web=False, filer=True)
    assert "node.filer" in modules
    assert of(modules, *COLLECTOR_ONLY) == []
    assert of(modules, "rest_framework.views", "drf_spectacular.openapi", "requests", "urllib3") == []


def test_a_collector_process_imports_nothing_of_the_node(tmp_path):
    modules = loaded_modules("collector", tmp_path)
    assert "collector.views" in modules
    assert of(modules, "node") == []
