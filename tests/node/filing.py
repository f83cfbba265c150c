"""Helpers of the filer and store tests: real capture files, file systems, the filer as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import pcapgen
from node import store

ROOT = Path(__file__).resolve().parents[2]
NS = 1_000_000_000
SEED_FIRST, SEED_SECOND = 1432321101, 1432330109  # the seed README's example files


def window_paths(start_ns: int, end_ns: int, **tree) -> list[Path]:
    """The paths of the capture files a query over the window is answered from (``store.captures_for_window``)."""
    return [file.path for file in store.captures_for_window(start_ns, end_ns, **tree)]


def write_capture(directory: Path, epoch: int, *, seconds: float = 2.0, pps: int = 50, seed: int = 0) -> Path:
    """A real pcap ``pcap.<epoch>`` whose packets start at ``epoch``; its mtime is its last packet."""
    path = directory / f"pcap.{epoch}"
    records = list(pcapgen.mixed_traffic(epoch * NS, seconds, 8, pps=pps, seed=seed or epoch))
    pcapgen.write_pcap(path, records)
    last_ns = records[-1][0] if records else epoch * NS
    os.utime(path, ns=(last_ns, last_ns))
    return path


def write_captures(directory: Path, epochs: list[int], **kwargs) -> dict[str, bytes]:
    """Several captures; returns name -> bytes, to compare with what gets filed."""
    return {
        write_capture(directory, epoch, **kwargs).name: (directory / f"pcap.{epoch}").read_bytes()
        for epoch in epochs
    }


def filed_files(filer_dir: Path) -> dict[str, list[Path]]:
    """name -> every path under ``filer_dir`` holding a capture of that name (to see duplicates)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(filer_dir.rglob("pcap.*")):
        if path.is_file() and not path.name.endswith((".idx", ".summary")):
            found.setdefault(path.name, []).append(path)
    return found


def temp_files(*dirs: Path) -> list[Path]:
    """Hidden files anywhere under ``dirs``: what a crashed writer could leave behind."""
    return [p for d in dirs for p in d.rglob(".*") if p.is_file()]


def filer_env(tmp_path: Path, capture_dir: Path, filer_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PAR_ROLE": "node",
        "PAR_DATA_DIR": str(tmp_path / "data"),
        "PAR_CAPTURE_DIR": str(capture_dir),
        "PAR_FILER_DIR": str(filer_dir),
        "DJANGO_SETTINGS_MODULE": "parsite.settings",
    }
    env.pop("PAR_FILER_CRASH_AT", None)
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python manage.py <args>`` as its own process (so it can be killed)."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_manage(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=out, stderr=out
        )


@contextmanager
def tmpfs(mountpoint: Path, size: str = "16m") -> Iterator[Path]:
    """A fresh tmpfs at ``mountpoint`` (another file system than tmp_path); skips when not permitted."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", f"par-test-{uuid.uuid4().hex[:8]}", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
