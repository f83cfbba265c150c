"""Start-up refuses what will not work, in one clear line: a setting that cannot load (manage.py and
gunicorn alike), and a collector whose database lacks migrations. Real gunicorn and manage.py."""

from __future__ import annotations

import os
import sys

import pytest

from tests.servers import GUNICORN, ROOT, free_port, run

pytestmark = pytest.mark.slow


def clean_env(tmp_path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PAR_", "DJANGO_")) and k != "DATABASE_URL"
    }
    return env | {"PAR_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "parsite.settings"} | extra


def start_gunicorn(env: dict[str, str]):
    env = env | {"PAR_BIND": f"127.0.0.1:{free_port()}", "PAR_WORKERS": "1"}
    return run([str(GUNICORN), "parsite.wsgi", "-c", str(ROOT / "gunicorn.conf.py")], env, timeout=90)


@pytest.mark.parametrize("role", ["collector", "node"])
def test_a_placeholder_stops_gunicorn_with_one_line(role, tmp_path):
    result = start_gunicorn(
        clean_env(tmp_path, PAR_ROLE=role, DJANGO_SECRET_KEY="change-me-to-50-random-characters")
    )
    assert result.returncode != 0
    said = [line for line in result.stderr.splitlines() if "Starting gunicorn" not in line]
    assert said == [
        f"Packets at Rest ({role}) cannot start: ImproperlyConfigured: DJANGO_SECRET_KEY still holds the sample's"
        " 'change-me' placeholder: set a real value (docs/operator.md \"Deployment\" shows how to generate secrets)"
    ]


def test_a_bad_setting_stops_manage_py_with_one_line(tmp_path):
    result = run([sys.executable, "manage.py", "check"], clean_env(tmp_path, PAR_KEY_RATE="fast"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "manage.py: Packets at Rest cannot start: ImproperlyConfigured: PAR_KEY_RATE must be a whole number,"
        " not 'fast'"
    ]


def test_a_collector_on_an_unmigrated_database_refuses_to_start_naming_migrate(tmp_path):
    result = start_gunicorn(clean_env(tmp_path, PAR_ROLE="collector"))
    assert result.returncode != 0
    refusals = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert refusals, result.stderr
    assert "the database lacks" in refusals[0] and "run `manage.py migrate` first" in refusals[0]
    assert "Traceback" not in result.stderr


def test_a_migrated_collector_starts(tmp_path):
    from tests.collector.live import manage
    from tests.servers import gunicorn

    env = {"PAR_DATA_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    manage(env, "migrate", "--noinput")
    with gunicorn("collector", env) as collector:
        assert "cannot start" not in collector.log()
