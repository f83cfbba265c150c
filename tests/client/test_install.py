"""par installs with pip from the repository into an environment that has requests and no Django."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.conftest import CLIENT_DIR

# requests and what it needs: the client's whole world.
DISTRIBUTIONS = ("requests", "urllib3", "idna", "certifi", "charset_normalizer")


def link_distribution(name: str, site: Path) -> None:
    """Make an installed distribution (its files and its metadata) visible in another site-packages."""
    dist = importlib.metadata.distribution(name)
    tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    base = Path(dist.locate_file(""))
    for top in tops:
        if top.endswith(".py") or (base / top).is_dir():
            (site / top).symlink_to(base / top)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtual environment with only requests and its dependencies, and par installed by pip."""
    base = tmp_path_factory.mktemp("par-venv")
    source = base / "client"  # a copy: building writes build/ and egg-info beside the sources
    shutil.copytree(CLIENT_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(base / "wheels"), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    for name in DISTRIBUTIONS:
        link_distribution(name, site)
    (wheel,) = (base / "wheels").glob("par_client-*.whl")
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return venv


@pytest.mark.slow
def test_the_installed_command_runs_without_django(installed):
    python = installed / "bin" / "python"
    no_django = subprocess.run([str(python), "-c", "import django"], capture_output=True)
    assert no_django.returncode == 1 and b"No module named 'django'" in no_django.stderr
    version = subprocess.run([str(installed / "bin" / "par"), "--version"], capture_output=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == b"par 1.0.0"


@pytest.mark.slow
def test_the_installed_command_downloads_a_flow(installed, live, tmp_path):
    from tests.client.conftest import FLOW, WINDOW, expected_pcap

    args = [f"{name}={value}" for name, value in {**FLOW, **WINDOW, "node_id": "1"}.items()]
    result = subprocess.run(
        [str(installed / "bin" / "par"), "pcap", *args, "-o", "flow.pcap"],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "PAR_URL": live.collector.url,
            "PAR_API_KEY": live.key,
        },
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "flow.pcap").read_bytes()[24:] == expected_pcap()[24:]
