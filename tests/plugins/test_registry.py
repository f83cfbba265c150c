"""The registry: what PAR_PLUGINS enables, what start-up refuses, what GET /plugins shows.

Settings are read once per process, so each case runs Django in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.servers import PRODUCTION_ENV

ROOT = Path(__file__).resolve().parents[2]
TEST_PLUGIN = "tests.plugins.par_test_plugin"
NODE_ONLY = "tests.plugins.par_node_only"

METADATA = (
    "import django, json; django.setup();"
    "from api.plugins import plugin_metadata; print(json.dumps(plugin_metadata()))"
)


def run_django(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PAR_PLUGINS")},
        "DJANGO_SETTINGS_MODULE": "parsite.settings",
        "PAR_DATA_DIR": str(tmp_path),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60
    )


def metadata(tmp_path: Path, **env: str) -> list[dict]:
    result = run_django(METADATA, tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_no_plugin_is_registered_unless_enabled(tmp_path):
    assert metadata(tmp_path, PAR_PLUGINS="") == []


def test_an_enabled_plugin_shows_the_seeds_metadata_fields(tmp_path):
    listed = metadata(
        tmp_path,
        PAR_PLUGINS=f"sysinfo,{TEST_PLUGIN}",
        PAR_PLUGINS_CONFIG='{"par_test_plugin": {"greeting": "bonjour"}}',
    )
    assert [p["id"] for p in listed] == ["sysinfo", "par_test_plugin"]  # PAR_PLUGINS order
    assert listed[1] == {
        "id": "par_test_plugin",
        "name": "Test plugin for Packets at Rest",
        "description": "proves registration, routing, metadata and the role's checks",
        "url": "https://example.org/par_test_plugin",
        "author": "Packets at Rest tests",
        "author_url": "mailto:tests@example.org",
        "version": "0.1.2",
        # the operator's value over the default; a secret setting never shown
        "settings": {"greeting": "bonjour", "token": "********"},
        "directory": "tests/plugins/par_test_plugin",
    }
    assert listed[0]["directory"] == "plugins/sysinfo"
    assert listed[0]["settings"] == {"interfaces": ["*"]}


def test_a_plugin_without_settings_shows_null(tmp_path):
    (listed,) = metadata(tmp_path, PAR_PLUGINS=NODE_ONLY, PAR_ROLE="node")
    assert listed["settings"] is None and listed["url"] is None and listed["author_url"] is None


def test_a_plugin_applies_only_to_its_roles(tmp_path):
    code = (
        "import django, json; django.setup(); from django.conf import settings;"
        "from api.plugins import plugin_metadata; from api.routes import list_routes;"
        "print(json.dumps([[p['id'] for p in plugin_metadata()],"
        " [a for a in settings.INSTALLED_APPS if a.startswith('tests.')],"
        " [r['path'] for r in list_routes() if r['path'].startswith('/plugins/')]]))"
    )
    env = {"PAR_PLUGINS": f"{TEST_PLUGIN},{NODE_ONLY}"}
    on_node = run_django(code, tmp_path, PAR_ROLE="node", **env)
    on_collector = run_django(code, tmp_path, PAR_ROLE="collector", **env)
    assert on_node.returncode == 0, on_node.stderr
    assert on_collector.returncode == 0, on_collector.stderr
    assert json.loads(on_node.stdout) == [
        ["par_test_plugin", "par_node_only"],
        [f"{TEST_PLUGIN}.ParTestPluginConfig", f"{NODE_ONLY}.ParNodeOnlyConfig"],
        [
            "/plugins/par_test_plugin/echo",
            "/plugins/par_test_plugin/items/<int:number>",
            "/plugins/par_test_plugin/plain",
            "/plugins/par_node_only/here",
        ],
    ]
    assert json.loads(on_collector.stdout) == [
        ["par_test_plugin"],
        [f"{TEST_PLUGIN}.ParTestPluginConfig"],
        [
            "/plugins/par_test_plugin/echo",
            "/plugins/par_test_plugin/items/<int:number>",
            "/plugins/par_test_plugin/plain",
        ],
    ]


def test_the_registry_does_not_change_after_start(tmp_path):
    code = textwrap.dedent(
        """
        import django; django.setup()
        from api import plugins
        first = plugins.plugin_metadata()
        first[0]["name"] = "changed"; first.clear()
        assert plugins.registry() is plugins.registry()
        assert isinstance(plugins.registry(), tuple)
        print(plugins.plugin_metadata()[0]["name"])
        """
    )
    result = run_django(code, tmp_path, PAR_PLUGINS="sysinfo")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "System information"


def test_a_plugin_route_and_its_view_show_in_the_openapi_document(tmp_path):
    env = {"PAR_PLUGINS": f"sysinfo,{TEST_PLUGIN}", "PAR_ROLE": "node"}
    code = (
        "import django, json; django.setup();"
        "from drf_spectacular.generators import SchemaGenerator;"
        "print(json.dumps(sorted(SchemaGenerator().get_schema(request=None, public=True)['paths'])))"
    )
    result = run_django(code, tmp_path, **env)
    assert result.returncode == 0, result.stderr
    paths = json.loads(result.stdout)
    assert "/plugins/sysinfo/" in paths
    assert "/plugins/par_test_plugin/items/{number}" in paths


def test_the_deploy_check_stays_clean_with_plugins_enabled(tmp_path):
    for role in ("node", "collector"):
        result = subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=ROOT,
            env={
                **os.environ,
                "PAR_ROLE": role,
                "PAR_PLUGINS": f"sysinfo,{TEST_PLUGIN},{NODE_ONLY}",
                "PAR_DATA_DIR": str(tmp_path),
                "PAR_CAPTURE_DIR": str(tmp_path),
                "PAR_FILER_DIR": str(tmp_path),
                "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
                **PRODUCTION_ENV,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{role}: {result.stderr}"
        assert "no issues" in result.stdout, f"{role}: {result.stdout}{result.stderr}"


# --- validation at start-up --------------------------------------------------

GOOD = {
    "verbose_name": "'Broken on purpose'",
    "description": "'a plugin the registry must refuse'",
    "author": "'Packets at Rest tests'",
    "version": "'1.0.0'",
}


def broken_plugin(tmp_path: Path, case: str, source: str | None = None, **attrs: str) -> str:
    """Write ``broken/<case>/__init__.py`` (a PluginConfig with ``attrs`` over GOOD); return its entry."""
    package = tmp_path / "pkgs" / "broken" / case
    package.mkdir(parents=True)
    (package.parent / "__init__.py").touch()
    if source is None:
        fields = {"name": f"'broken.{case}'", **GOOD, **attrs}
        body = "\n".join(f"    {key} = {value}" for key, value in fields.items() if value is not None)
        source = f"from api.plugins import PluginConfig\n\nclass C(PluginConfig):\n{body}\n\nconfig = C\n"
    (package / "__init__.py").write_text(source)
    return f"broken.{case}"


BROKEN = [
    # (case, attrs or source, what the message says)
    ("bad_version", {"version": "'1.0'"}, "version '1.0' is not a semantic version"),
    ("too_new", {"min_version": "'99.0.0'"}, "needs Packets at Rest at least 99.0.0, this is"),
    ("too_old", {"max_version": "'0.0.1'"}, "needs Packets at Rest at most 0.0.1"),
    ("bad_min", {"min_version": "'soon'"}, "min_version 'soon' is not a semantic version"),
    ("bad_role", {"roles": "('sensor',)"}, "roles ('sensor',) must name one or both of collector, node"),
    ("no_role", {"roles": "()"}, "must name one or both"),
    ("no_description", {"description": None}, "description is required"),
    ("no_display_name", {"verbose_name": None}, "verbose_name is required"),
    ("no_author", {"author": "''"}, "author is required"),
    ("wrong_name", {"name": "'plugins.other'"}, "name must be its module path 'broken.wrong_name'"),
    ("bad_url", {"url": "'ftp://example.org'"}, "url 'ftp://example.org' must be an http(s):// or mailto:"),
    ("bad_label", {"label": "'Bad-Label'"}, "id (label) 'Bad-Label' must be lower-case"),
    ("bad_defaults", {"default_settings": "['x']"}, "default_settings must be a dict"),
    ("needs_setting", {"required_settings": "('api_token',)"}, "required setting(s) api_token missing"),
    ("no_config", "X = 1\n", "must set `config` to its subclass of api.plugins.PluginConfig"),
    (
        "not_a_plugin_config",
        "from django.apps import AppConfig\nclass C(AppConfig):\n    name = 'x'\nconfig = C\n",
        "must set `config` to its subclass",
    ),
    ("raises", "raise RuntimeError('boom')\n", "importing broken.raises failed: RuntimeError: boom"),
    ("missing_dependency", "import par_no_such_dependency\n", "No module named 'par_no_such_dependency'"),
]


@pytest.mark.parametrize(("case", "definition", "message"), BROKEN, ids=[c[0] for c in BROKEN])
def test_start_up_refuses_a_broken_plugin_naming_it(tmp_path, case, definition, message):
    if isinstance(definition, str):
        entry = broken_plugin(tmp_path, case, source=definition)
    else:
        entry = broken_plugin(tmp_path, case, **definition)
    result = run_django(
        "import django; django.setup()", tmp_path, PAR_PLUGINS=entry, PYTHONPATH=str(tmp_path / "pkgs")
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"plugin {entry!r}" in result.stderr
    assert message in result.stderr


def test_every_problem_of_a_plugin_is_named_at_once(tmp_path):
    entry = broken_plugin(tmp_path, "many", version="'x'", roles="('both',)", description=None)
    result = run_django(
        "import django; django.setup()", tmp_path, PAR_PLUGINS=entry, PYTHONPATH=str(tmp_path / "pkgs")
    )
    assert result.returncode != 0
    for message in ("version 'x'", "roles ('both',)", "description is required"):
        assert message in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PAR_PLUGINS": "nosuchplugin"}, "plugin 'nosuchplugin': no package plugins.nosuchplugin"),
        ({"PAR_PLUGINS": "tests.plugins.nope"}, "plugin 'tests.plugins.nope': no package tests.plugins.nope"),
        ({"PAR_PLUGINS": "sysinfo,sysinfo"}, "id 'sysinfo' is already taken by plugin 'sysinfo'"),
        ({"PAR_PLUGINS": "sysinfo", "PAR_PLUGINS_CONFIG": "{oops"}, "PAR_PLUGINS_CONFIG is not valid JSON"),
        (
            {"PAR_PLUGINS": "sysinfo", "PAR_PLUGINS_CONFIG": '["sysinfo"]'},
            "PAR_PLUGINS_CONFIG must be a JSON",
        ),
        (
            {"PAR_PLUGINS": "sysinfo", "PAR_PLUGINS_CONFIG": '{"facter": {}}'},
            "PAR_PLUGINS_CONFIG configures 'facter', which PAR_PLUGINS does not enable",
        ),
        (
            {"PAR_PLUGINS": "sysinfo", "PAR_PLUGINS_CONFIG": '{"sysinfo": {"interface": ["eth0"]}}'},
            "plugin 'sysinfo': unknown setting(s) interface in PAR_PLUGINS_CONFIG['sysinfo'] (known: interfaces)",
        ),
        (
            {"PAR_PLUGINS": "sysinfo", "PAR_PLUGINS_CONFIG": '{"sysinfo": {"interfaces": 5}}'},
            "plugin 'sysinfo': interfaces must be a pattern or a list of patterns",
        ),
    ],
)
def test_start_up_refuses_a_bad_plugin_list(tmp_path, env, message):
    result = run_django("import django; django.setup()", tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_a_plugin_urls_module_without_urlpatterns_fails_the_checks(tmp_path):
    entry = broken_plugin(tmp_path, "no_patterns")
    api = tmp_path / "pkgs" / "broken" / "no_patterns" / "api"
    api.mkdir()
    (api / "__init__.py").touch()
    (api / "urls.py").write_text("patterns = []\n")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={
            **os.environ,
            "PAR_PLUGINS": entry,
            "PAR_DATA_DIR": str(tmp_path),
            "PYTHONPATH": str(tmp_path / "pkgs"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "plugin 'no_patterns': broken.no_patterns.api.urls must define a urlpatterns list" in result.stderr


def test_the_documented_example_plugin_works(tmp_path):
    """The "Write your own plugin" files, as printed, make a working plugin."""
    readme = (ROOT / "docs" / "plugins.md").read_text()
    section = readme.split("### Write your own plugin", 1)[1]
    files = re.findall(r"```python\n# plugins/(\S+)\n(.*?)```", section, flags=re.S)
    assert [name for name, _ in files] == [
        "uptime_check/__init__.py",
        "uptime_check/api/views.py",
        "uptime_check/api/urls.py",
    ]
    # Under another top-level name: the project's own plugins/ package would shadow a second one.
    for name, source in files:
        target = tmp_path / "pkgs" / "readme" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (target.parent / "__init__.py").touch()
        target.write_text(source.replace("plugins.uptime_check", "readme.uptime_check"))
    (tmp_path / "pkgs" / "readme" / "__init__.py").touch()
    code = (
        "import django, json; django.setup(); from django.test import Client;"
        "from api.plugins import plugin_metadata;"
        "answer = Client(HTTP_HOST='localhost').get('/plugins/uptime_check/');"
        "print(json.dumps([answer.status_code, answer.json(), plugin_metadata()[0]['settings']]))"
    )
    result = run_django(
        code,
        tmp_path,
        PAR_ROLE="node",
        PAR_PLUGINS="readme.uptime_check",
        PAR_PLUGINS_CONFIG='{"uptime_check": {"recent_hours": 1000000}}',
        PYTHONPATH=str(tmp_path / "pkgs"),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [200, {"rebooted_lately": True}, {"recent_hours": 1000000}]
