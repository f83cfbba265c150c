"""The project's ground: settings from the environment, both roles, JSON errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.test import Client, override_settings

from tests.servers import PRODUCTION_ENV, run


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "parsite.settings", **env}
    return run([sys.executable, "-c", code], full_env)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PAR_ROLE", "sensor"),
        ("PAR_UTC", "maybe"),
        ("PAR_MAX_WINDOW", "a day"),
        ("PAR_MAX_WINDOW", "0"),
        ("PAR_NODE_ALLOW", "10.0.0.0/33"),
        ("PAR_NODE_DENY", "not-a-network"),
        ("DATABASE_URL", "mysql://x@y/z"),
        ("PAR_FILE_PREFIX", "../pcap"),
        ("PAR_NODE_SECRET", "s3cret-\u00e9t\u00e9"),
        ("PAR_NODE_SECRET", "s3cret\tvalue"),
        ("PAR_NODE_SECRET", " s3cret"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_variable(variable, value, tmp_path):
    result = run_python("import django; django.setup()", **{variable: value, "PAR_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr
    if variable == "PAR_NODE_SECRET":
        assert "s3cret" not in result.stderr  # a secret is never shown


@pytest.mark.parametrize(
    "variable", ["DJANGO_SECRET_KEY", "PAR_KEY_PEPPER", "PAR_NODE_SECRET", "DATABASE_URL"]
)
def test_a_sample_placeholder_is_refused_at_start_naming_the_variable(variable, tmp_path):
    value = (
        "postgres://par:change-me@db/par"
        if variable == "DATABASE_URL"
        else "change-me-to-a-long-random-string"
    )
    result = run_python("import django; django.setup()", **{variable: value, "PAR_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert (
        f"ImproperlyConfigured: {variable} still holds the sample's 'change-me' placeholder" in result.stderr
    )
    assert value not in result.stderr


@pytest.mark.parametrize(
    ("name", "variable", "warning"),
    [
        ("secret_key", "DJANGO_SECRET_KEY", "admin sessions then end"),
        ("key_pepper", "PAR_KEY_PEPPER", "the API keys that exist then stop working"),
    ],
)
def test_an_empty_secret_file_is_refused_naming_it(name, variable, warning, tmp_path):
    (tmp_path / name).write_text("\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY", "PAR_KEY_PEPPER")}
    result = run(
        [sys.executable, "-c", "import django; django.setup()"],
        {**env, "DJANGO_SETTINGS_MODULE": "parsite.settings", "PAR_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode != 0
    assert (
        f"ImproperlyConfigured: {tmp_path / name} is empty: delete it to generate a new one" in result.stderr
    )
    assert warning in result.stderr
    assert (tmp_path / name).read_text() == "\n"  # left for the operator to decide
    # Set in the environment, the file is not read.
    started = run_python("import django; django.setup()", PAR_DATA_DIR=str(tmp_path), **{variable: "x" * 50})
    assert started.returncode == 0, started.stderr


def test_the_defaults_of_the_spec(tmp_path):
    code = (
        "import django, json; django.setup(); from django.conf import settings as s;"
        "print(json.dumps([s.PAR_ROLE, str(s.PAR_CAPTURE_DIR), str(s.PAR_FILER_DIR), s.PAR_FILE_PREFIX,"
        " s.PAR_UTC, [str(n) for n in s.PAR_NODE_ALLOW], s.PAR_NODE_DENY, s.PAR_MAX_WINDOW,"
        " s.DATABASES['default']['NAME'], s.ROOT_URLCONF]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAR_") and k != "DATABASE_URL"}
    result = run(
        [sys.executable, "-c", code],
        {**env, "DJANGO_SETTINGS_MODULE": "parsite.settings", "PAR_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        "collector",
        "/data/pcap",
        "/data/filed",
        "pcap",
        True,
        ["127.0.0.0/8", "::1/128"],
        [],
        31 * 86400,
        str(tmp_path / "par.sqlite3"),
        "parsite.urls_collector",
    ]


def test_a_node_with_missing_directories_fails_its_checks(tmp_path):
    result = run(
        [sys.executable, "manage.py", "check"],
        {
            **os.environ,
            "PAR_ROLE": "node",
            "PAR_DATA_DIR": str(tmp_path),
            "PAR_CAPTURE_DIR": str(tmp_path / "nope"),
            "PAR_FILER_DIR": str(tmp_path / "nope2"),
        },
    )
    assert result.returncode != 0
    assert "node.E001" in result.stderr and "node.E002" in result.stderr


def test_version_flag_prints_both_versions():
    result = run([sys.executable, "manage.py", "--version"])
    from api.version import API_VERSION, VERSION

    assert result.returncode == 0
    assert VERSION in result.stdout and API_VERSION in result.stdout


@override_settings(ROOT_URLCONF="parsite.urls_node", PAR_ROLE="node")
def test_node_ping_answers_its_role():
    response = Client().get("/ping")
    assert response.status_code == 200
    body = response.json()
    assert body["role"] == "node"
    assert set(body) >= {"version", "api_version", "uptime", "date", "role"}


@override_settings(ROOT_URLCONF="parsite.urls_node", PAR_ROLE="node")
def test_unknown_path_is_a_json_404():
    response = Client().get("/no/such/thing")
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}


def test_deploy_check_passes_with_the_documented_production_settings(tmp_path):
    env = {
        **os.environ,
        "PAR_DATA_DIR": str(tmp_path),
        **PRODUCTION_ENV,
    }
    result = run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.slow
def test_both_roles_answer_ping_under_gunicorn(tmp_path):
    from tests.servers import gunicorn

    (tmp_path / "capture").mkdir()
    (tmp_path / "filed").mkdir()
    env = {
        "PAR_DATA_DIR": str(tmp_path),
        "PAR_CAPTURE_DIR": str(tmp_path / "capture"),
        "PAR_FILER_DIR": str(tmp_path / "filed"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    import requests

    with gunicorn("node", env) as node:
        answer = requests.get(f"{node.url}/ping", timeout=5)
        assert answer.status_code == 200
        assert answer.json()["role"] == "node"
    from tests.collector.live import manage

    manage(env, "migrate", "--noinput")  # a collector refuses to start on a database that lacks one
    with gunicorn("collector", env) as collector:
        answer = requests.get(f"{collector.url}/ping", timeout=5)
        assert answer.status_code in (200, 401)  # a valid key is required once keys exist
        assert "gthread" in collector.log() or "Booting worker" in collector.log()


def test_a_node_refuses_to_start_without_its_directories(tmp_path):
    from tests.servers import GUNICORN, free_port

    env = {
        **os.environ,
        "PAR_ROLE": "node",
        "PAR_DATA_DIR": str(tmp_path),
        "PAR_CAPTURE_DIR": str(tmp_path / "missing"),
        "PAR_FILER_DIR": str(tmp_path),
        "PAR_BIND": f"127.0.0.1:{free_port()}",
    }
    result = run([str(GUNICORN), "parsite.wsgi", "-c", "gunicorn.conf.py"], env)
    assert result.returncode != 0
    assert "node.E001" in result.stderr


def test_a_collector_refuses_to_start_when_its_database_is_unusable(tmp_path):
    from tests.servers import GUNICORN, free_port

    env = {
        **os.environ,
        "PAR_ROLE": "collector",
        "PAR_DATA_DIR": str(tmp_path),
        # Nothing listens on that port: the database cannot be reached.
        "DATABASE_URL": f"postgres://par:par@127.0.0.1:{free_port()}/par",
        "PAR_BIND": f"127.0.0.1:{free_port()}",
    }
    check = run([sys.executable, "manage.py", "check", "--database", "default"], env)
    assert check.returncode != 0
    assert "collector.E001" in check.stderr
    served = run([str(GUNICORN), "parsite.wsgi", "-c", "gunicorn.conf.py"], env)
    assert served.returncode != 0
    assert "collector.E001" in served.stderr


def test_a_worker_freezes_what_it_loaded_to_start_so_full_collections_skip_it():
    import gc
    import runpy

    from tests.servers import ROOT

    hooks = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert gc.get_freeze_count() == 0
    hooks["post_worker_init"](None)
    try:
        assert gc.get_freeze_count() > 1000  # this test's interpreter, with Django and the apps loaded
    finally:
        gc.unfreeze()
