"""``make`` checks its prerequisites first and says what to install."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _fake_python(where: Path, body: str) -> Path:
    path = where / "python"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def _make_prerequisites(python: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    # PY points to a venv that does not exist, as on a fresh checkout.
    return subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(ROOT),
            "prerequisites",
            f"PYTHON={python}",
            f"PY={tmp_path}/venv/bin/python",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_python_older_than_3_11_is_refused_by_name(tmp_path):
    old = _fake_python(tmp_path, 'case "$1" in -V) echo "Python 3.9.2";; *) exit 1;; esac')
    result = _make_prerequisites(old, tmp_path)
    assert result.returncode != 0
    assert "needs Python 3.11 or newer" in result.stderr and "Python 3.9.2" in result.stderr


def test_a_python_without_venv_names_python3_venv(tmp_path):
    no_venv = _fake_python(tmp_path, f'case "$2" in *ensurepip*) exit 1;; esac\nexec {sys.executable} "$@"')
    result = _make_prerequisites(no_venv, tmp_path)
    assert result.returncode != 0
    assert "python3-venv" in result.stderr


def test_a_missing_python_is_named(tmp_path):
    result = _make_prerequisites(tmp_path / "no-such-python", tmp_path)
    assert result.returncode != 0 and "not found" in result.stderr


def test_this_python_passes(tmp_path):
    result = _make_prerequisites(Path(sys.executable), tmp_path)
    assert result.returncode == 0, result.stderr
