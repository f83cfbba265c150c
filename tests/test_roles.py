"""Each role loads only itself: a node process imports no collector code, a collector none of a node's."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.node.filing import write_capture
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


def loaded_modules(
    role: str, tmp_path: Path, web: bool = True, filer: bool = False, to_file: int = 0
) -> set[str]:
    """The modules a process of ``role`` loads; ``to_file``: finished captures its filing pass files."""
    capture, filed = tmp_path / "pcap", tmp_path / "filed"
    capture.mkdir(exist_ok=True)
    filed.mkdir(exist_ok=True)
    for minute in range(to_file + 1):  # and the live file, never filed
        write_capture(capture, 1_700_000_000 + 60 * minute)
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


# What a filer's process never needs, though a node's server may: every cron pass pays its start-up.
# No REST framework views, no OpenAPI (drf-spectacular is no installed app of a node), no HTTP
# client, no object-store client while no archive is configured, no metrics library (the filer's
# counts are a file), and no compiler while there is nothing to index.
NOT_THE_FILERS = (
    "rest_framework.views",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "requests",
    "urllib3",
    "boto3",
    "botocore",
    "prometheus_client",
)


def test_the_filer_loads_no_web_framework(tmp_path):
    modules = loaded_modules("node", tmp_path, web=False, filer=True)
    assert "node.filer" in modules
    assert of(modules, *COLLECTOR_ONLY) == []
    assert of(modules, *NOT_THE_FILERS, "numba", "llvmlite", "multiprocessing") == []  # no worker pool


def test_a_filer_filing_a_capture_loads_only_the_index_build_besides(tmp_path):
    modules = loaded_modules("node", tmp_path, web=False, filer=True, to_file=1)
    assert "numba" in modules  # the index build's loops (engine/native.py): the file was indexed
    assert list((tmp_path / "filed").rglob("pcap.1700000000.idx"))
    assert of(modules, *COLLECTOR_ONLY) == []
    assert of(modules, *NOT_THE_FILERS) == []


def test_a_collector_process_imports_nothing_of_the_node(tmp_path):
    modules = loaded_modules("collector", tmp_path)
    assert "collector.views" in modules
    assert of(modules, "node") == []
