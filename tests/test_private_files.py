"""The data files are private: database, its journals, secrets and locks 0600 whatever the umask."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

from tests.servers import ROOT

WORLD_READABLE_UMASK = 0o022  # a distribution's default: files 0644 unless created otherwise


def manage(tmp_path: Path, role: str, *args: str) -> None:
    """``manage.py <args>`` as its own process, under a umask that lets everyone read new files."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "parsite.settings",
        "PAR_ROLE": role,
        "PAR_DATA_DIR": str(tmp_path / "var"),
        "PAR_CAPTURE_DIR": str(tmp_path / "pcap"),
        "PAR_FILER_DIR": str(tmp_path / "filed"),
    }
    for name in ("DATABASE_URL", "DJANGO_SECRET_KEY", "PAR_KEY_PEPPER"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(WORLD_READABLE_UMASK),
    )
    assert result.returncode == 0, result.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_migrate_leaves_the_database_and_the_secrets_0600_in_a_0700_directory(tmp_path):
    manage(tmp_path, "collector", "migrate", "--noinput")

    data = tmp_path / "var"
    assert mode(data) == 0o700
    for name in ("par.sqlite3", "secret_key", "key_pepper"):
        assert mode(data / name) == 0o600, name
    assert (data / "par.sqlite3").stat().st_size > 0  # migrated, not only created


def test_the_databases_wal_and_shm_files_are_0600_as_it_is(tmp_path):
    manage(tmp_path, "collector", "migrate", "--noinput")
    database = tmp_path / "var" / "par.sqlite3"
    old = os.umask(WORLD_READABLE_UMASK)
    try:
        connection = sqlite3.connect(database)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE probe (x)")
        connection.commit()
        try:
            for suffix in ("-wal", "-shm"):
                journal = database.with_name(database.name + suffix)
                assert journal.exists() and mode(journal) == 0o600, suffix
        finally:
            connection.close()
    finally:
        os.umask(old)


def test_the_filers_lock_files_are_0600(tmp_path):
    (tmp_path / "pcap").mkdir()
    (tmp_path / "filed").mkdir()
    manage(tmp_path, "node", "runfiler")

    for name in ("filer.lock", "filer-tree.lock"):
        assert mode(tmp_path / "var" / name) == 0o600, name


def test_the_services_create_their_files_private():
    units = sorted((ROOT / "deploy" / "systemd").glob("par-*.service"))
    assert units
    for unit in units:
        assert re.search(r"^UMask=0077$", unit.read_text(), re.MULTILINE), f"{unit.name} has no UMask=0077"


def test_the_filers_counts_and_a_reindex_run_by_cron_are_private(tmp_path):
    """filer-stats.json and the indexes reindex writes are 0600, whatever the umask of who runs them."""
    from engine.index import index_path
    from pcapgen import ether, tcp, write_pcap

    capture_dir, filed = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filed.mkdir()
    capture = filed / "pcap.1700000000"  # a filed capture: reindex's default
    write_pcap(capture, [(1_700_000_000 * 10**9, ether(tcp("10.0.0.1", 1, "10.0.0.2", 2, b"x")))])
    manage(tmp_path, "node", "reindex")
    assert mode(index_path(capture)) == 0o600
    manage(tmp_path, "node", "runfiler")
    assert mode(tmp_path / "var" / "filer-stats.json") == 0o600


def test_the_metrics_directory_is_private_whatever_the_data_directory_was(tmp_path):
    """A data directory made by hand (0755), a metrics directory left by an older run (0755): 0700 at start."""
    from tests.servers import gunicorn

    data = tmp_path / "var"
    (data / "metrics-node").mkdir(parents=True)
    data.chmod(0o755)
    (data / "metrics-node").chmod(0o755)
    env = {"PAR_DATA_DIR": str(data), "DATABASE_URL": f"sqlite:///{data / 'db.sqlite3'}"}
    for variable, name in (("PAR_CAPTURE_DIR", "capture"), ("PAR_FILER_DIR", "filed")):
        env[variable] = str(tmp_path / name)
        (tmp_path / name).mkdir()
    old = os.umask(WORLD_READABLE_UMASK)
    try:
        with gunicorn("node", env):
            metrics = data / "metrics-node"
            assert mode(metrics) == 0o700  # the workers' files in it are reachable by its owner only
    finally:
        os.umask(old)
