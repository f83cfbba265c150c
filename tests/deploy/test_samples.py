"""The deployment samples in deploy/ and the operator's guide (docs/operator.md) agree with what the code does."""

from __future__ import annotations

import grp
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys

import pytest
import yaml
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import ROOT, run

DEPLOY = ROOT / "deploy"
GUIDE = (ROOT / "docs" / "operator.md").read_text()


def sample_env(name: str) -> dict[str, str]:
    """The variables of ``deploy/<name>`` as an EnvironmentFile gives them."""
    values = {}
    for line in (DEPLOY / name).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("PAR_", "DJANGO_")) and k != "DATABASE_URL"
    }
    return run([sys.executable, "manage.py", "check", *args], {**clean, **env})


def _filled(env: dict[str, str], tmp_path) -> dict[str, str]:
    """The sample as an operator completes it: real secrets, and directories of this test."""
    env = {k: secrets.token_urlsafe(48) if "change-me" in v else v for k, v in env.items()}
    for name in ("PAR_DATA_DIR", "PAR_CAPTURE_DIR", "PAR_FILER_DIR"):
        (tmp_path / name).mkdir()
        env[name] = str(tmp_path / name)
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    return env


@pytest.mark.parametrize("name", ["collector.env.example", "node.env.example"])
def test_a_sample_env_file_is_refused_until_its_placeholders_are_replaced(name, tmp_path):
    env = sample_env(name)
    placeholders = sorted(k for k, v in env.items() if "change-me" in v)
    assert "DJANGO_SECRET_KEY" in placeholders and "PAR_NODE_SECRET" in placeholders
    refused = _check({**env, "PAR_DATA_DIR": str(tmp_path)})
    assert refused.returncode != 0
    assert (
        f"ImproperlyConfigured: {', '.join(placeholders)} still hold the sample's 'change-me'"
        in refused.stderr
    )


@pytest.mark.parametrize("name", ["collector.env.example", "node.env.example"])
def test_a_completed_sample_passes_the_deploy_checks(name, tmp_path):
    result = _check(_filled(sample_env(name), tmp_path), "--deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not re.findall(r"\((\w+\.W\d+)\)", result.stderr), result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_collector_sample_trusts_its_local_nginx():
    assert sample_env("collector.env.example")["PAR_TRUSTED_PROXIES"] == "127.0.0.1/32"


def test_the_node_sample_listens_on_loopback_behind_its_tls_proxy():
    env = sample_env("node.env.example")
    assert env["PAR_BIND"].startswith("127.0.0.1:") and env["PAR_TRUSTED_PROXIES"] == "127.0.0.1/32"
    assert "proxy_pass http://par_node" in (DEPLOY / "nginx-par-node.conf").read_text()


def test_the_env_files_are_installed_readable_by_par_only():
    installs = re.findall(r"install -m (\d+) -o root -g par deploy/(\w+)\.env\.example", GUIDE)
    assert sorted(installs) == [("0640", "collector"), ("0640", "node")]


def test_no_service_migrates_at_start():
    for unit in (DEPLOY / "systemd").glob("*.service"):
        assert "migrate" not in re.sub(r"#.*", "", unit.read_text()), unit.name


def test_the_capture_tool_writes_as_par():
    unit = (DEPLOY / "systemd" / "daemonlogger.service").read_text()
    assert re.search(r"ExecStart=\S*daemonlogger .* -u par -g par", unit)
    assert "install -d -o par -g par -m 0750 /data/pcap /data/filed" in GUIDE


def test_the_cron_log_is_where_par_writes_and_is_rotated():
    cron = re.search(r"^\s*\* \* \* \* \* par .*>> (\S+) 2>&1$", GUIDE, re.M)
    assert cron, "the guide's cron line"
    assert " par umask 077 && " in cron.group(0)  # cron's umask is 022: the log would be world-readable
    log_dir = os.path.dirname(cron.group(1))
    assert f"install -d -o par -g par -m 0750 /var/lib/packets-at-rest {log_dir}" in GUIDE
    rotated = (DEPLOY / "logrotate" / "packets-at-rest").read_text()
    assert f"{log_dir}/*.log {{" in rotated


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate is not installed")
def test_logrotate_reads_the_sample(tmp_path):
    sample = (DEPLOY / "logrotate" / "packets-at-rest").read_text()
    assert "su par par" in sample
    # The par user need not exist here: the one running the test stands in for it.
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    conf = tmp_path / "packets-at-rest"
    conf.write_text(sample.replace("su par par", f"su {user} {group}"))
    conf.chmod(0o644)
    result = subprocess.run(
        ["logrotate", "-d", "-s", str(tmp_path / "state"), str(conf)], capture_output=True, text=True
    )
    assert result.returncode == 0 and "error" not in result.stderr.lower(), result.stderr


def _exposed_names() -> set[str]:
    """Every metric family both roles' /metrics expose, as Prometheus names them."""
    names = set()
    for role in ("collector", "node"):
        with override_settings(
            ROOT_URLCONF=f"parsite.urls_{role}", PAR_ROLE=role, ALLOWED_HOSTS=["testserver"]
        ):
            text = Client().get("/metrics").content.decode()
        for family in text_string_to_metric_families(text):
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def _documented_names() -> set[str]:
    section = GUIDE[GUIDE.index("### Metrics") :]
    section = section[: section.index("\n## ")] if "\n## " in section else section
    rows = re.findall(r"^\| `(par_\w+)`(?:, `(par_\w+)`)?", section, re.M)
    return {name for row in rows for name in row if name}


def test_the_readme_lists_every_metric_and_only_those(tmp_path, db):  # db: the export jobs' figures
    with override_settings(PAR_CAPTURE_DIR=tmp_path, PAR_FILER_DIR=tmp_path, PAR_DATA_DIR=tmp_path):
        exposed = _exposed_names()
    assert _documented_names() == exposed


def test_the_alert_rules_use_exposed_metrics():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "par-alerts.yml").read_text())
    alerts = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}
    assert len(alerts) >= 2
    documented = _documented_names()
    for expr in alerts.values():
        used = set(re.findall(r"\bpar_\w+", expr))
        assert used and used <= documented, expr
    assert any("par_filer_lag_seconds" in e for e in alerts.values())
    assert any("par_disk_free_bytes" in e for e in alerts.values())
    # An operator's first day (issue 31): the capture gone, a node unreachable, the filer stopped.
    assert "par_capture_process_seen == 0" in alerts.values()
    assert any("par_node_up" in e for e in alerts.values())
    assert any("par_filer_last_pass_timestamp_seconds" in e for e in alerts.values())
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == {"par-collector", "par-node"}
