"""Fixtures of the node tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.s3 import weed_s3  # noqa: F401 - the S3 server of the archive tests (session-scoped)


@pytest.fixture
def dirs(tmp_path: Path, settings) -> tuple[Path, Path]:
    """An empty capture directory and filer directory, and PAR_DATA_DIR for the filer's locks."""
    capture_dir, filer_dir = tmp_path / "pcap", tmp_path / "filed"
    capture_dir.mkdir()
    filer_dir.mkdir()
    settings.PAR_DATA_DIR = tmp_path / "data"
    settings.PAR_DATA_DIR.mkdir()
    return capture_dir, filer_dir
