"""Plugins over real HTTP: a node and a collector under gunicorn, each with its own checks in front."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.servers import ROOT, gunicorn

PLUGINS = "sysinfo,tests.plugins.par_test_plugin,tests.plugins.par_node_only"
SECRET = "node-secret-for-plugins"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "capture").mkdir()
    (tmp_path / "filed").mkdir()
    return {
        "PAR_DATA_DIR": str(tmp_path),
        "PAR_CAPTURE_DIR": str(tmp_path / "capture"),
        "PAR_FILER_DIR": str(tmp_path / "filed"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PAR_PLUGINS": PLUGINS,
        "PAR_PLUGINS_CONFIG": '{"par_test_plugin": {"greeting": "bonjour"}}',
        "PAR_NODE_SECRET": SECRET,
    }


def manage(env: dict[str, str], *args: str, code: str | None = None) -> str:
    command = [sys.executable, "-c", code] if code else [sys.executable, "manage.py", *args]
    result = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "parsite.settings", "PAR_ROLE": "collector", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def ids(answer: requests.Response) -> list[str]:
    assert answer.status_code == 200, answer.text + answer.url
    return [plugin["id"] for plugin in answer.json()]


@pytest.mark.slow
def test_a_nodes_plugin_routes_answer_only_callers_its_acl_lets_in(env):
    with gunicorn("node", env) as node:
        for route in (
            "/plugins/sysinfo/",
            "/plugins/par_test_plugin/items/7",
            "/plugins/par_test_plugin/plain",
        ):
            refused = requests.get(node.url + route, timeout=10)
            assert refused.status_code == 403, route
            assert refused.json()["error"].startswith("this node does not answer this caller: ")

        secret = {"X-PAR-Node-Secret": SECRET}
        info = requests.get(f"{node.url}/plugins/sysinfo/", headers=secret, timeout=10)
        assert info.status_code == 200
        body = info.json()
        assert body["cpu"]["count"] == os.cpu_count()
        assert body["kernel"]["release"] == os.uname().release
        assert body["memory"]["total"] > 0 and body["uptime"] > 0
        assert {"packets", "drops", "errors"} <= set(body["interfaces"]["lo"]["rx"])
        item = requests.get(f"{node.url}/plugins/par_test_plugin/items/7", headers=secret, timeout=10)
        assert item.json() == {"number": 7}
        echo = requests.post(
            f"{node.url}/plugins/par_test_plugin/echo", json={"a": 1}, headers=secret, timeout=10
        )
        assert echo.json() == {"echo": {"a": 1}}
        assert ids(requests.get(f"{node.url}/plugins", headers=secret, timeout=10)) == [
            "sysinfo",
            "par_test_plugin",
            "par_node_only",
        ]
        assert requests.get(f"{node.url}/plugins/par_node_only/here", headers=secret, timeout=10).json() == {
            "role": "node"
        }


@pytest.mark.slow
def test_a_collectors_plugin_routes_need_a_valid_key_and_it_shows_a_nodes_plugins(env):
    manage(env, "migrate", "--noinput")
    key = manage(env, "createapikey", "--name", "plugins test", "--admin")
    with gunicorn("node", env) as node:
        manage(
            env,
            code=(
                "import django; django.setup(); from collector.models import Node;"
                f"Node.objects.create(id=1, name='sensor', address='{node.url.removeprefix('http://')}')"
            ),
        )
        with gunicorn("collector", env) as collector:
            for route in (
                "/plugins/sysinfo/",
                "/plugins/par_test_plugin/items/7",
                "/plugins/par_test_plugin/plain",
            ):
                missing = requests.get(collector.url + route, timeout=10)
                assert missing.status_code == 401, route
                assert "error" in missing.json()
                wrong = requests.get(collector.url + route, headers={"X-Api-Key": "not-a-key"}, timeout=10)
                assert wrong.status_code == 401, route

            by_header = {"Authorization": f"Api-Key {key}"}
            info = requests.get(f"{collector.url}/plugins/sysinfo/", headers=by_header, timeout=10)
            assert info.status_code == 200 and info.json()["cpu"]["count"] == os.cpu_count()
            # the seed's api_key parameter works too; the plugin sees the key the collector authenticated
            echo = requests.get(
                f"{collector.url}/plugins/par_test_plugin/echo", params={"api_key": key}, timeout=10
            )
            assert echo.json() == {"greeting": "bonjour", "caller": "ApiKey"}
            # a node-only plugin is neither mounted nor listed on a collector
            node_only = requests.get(
                f"{collector.url}/plugins/par_node_only/here", headers=by_header, timeout=10
            )
            assert node_only.status_code == 404
            assert ids(requests.get(f"{collector.url}/plugins", headers=by_header, timeout=10)) == [
                "sysinfo",
                "par_test_plugin",
            ]
            assert ids(requests.get(f"{collector.url}/nodes/1/plugins", headers=by_header, timeout=10)) == [
                "sysinfo",
                "par_test_plugin",
                "par_node_only",
            ]


@pytest.mark.slow
def test_gunicorn_refuses_to_start_with_a_broken_plugin(env):
    with (
        pytest.raises(RuntimeError) as failure,
        gunicorn("node", {**env, "PAR_PLUGINS": "sysinfo,nosuchplugin"}),
    ):
        pass
    assert "ImproperlyConfigured: plugin 'nosuchplugin': no package plugins.nosuchplugin" in str(
        failure.value
    )
