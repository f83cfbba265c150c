"""Where gunicorn's workers keep their metrics, so that /metrics adds them up (prometheus_client multiprocess).

Imported by gunicorn.conf.py, before Django: nothing here needs the settings. The directory is
``PAR_DATA_DIR/metrics-<role>`` (both roles may share one data directory), emptied when the
gunicorn master starts, and named to the workers in ``PROMETHEUS_MULTIPROC_DIR``, which
prometheus_client reads when it is first imported. Other processes (manage.py) keep their
metrics in memory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir(environ: os._Environ | dict = os.environ) -> Path:
    """``PAR_DATA_DIR/metrics-<role>``, as the settings read PAR_DATA_DIR and PAR_ROLE."""
    data_dir = Path(environ.get("PAR_DATA_DIR") or ROOT / "var").expanduser().resolve()
    role = environ.get("PAR_ROLE", "collector").strip().lower() or "collector"
    return data_dir / f"metrics-{role}"


def prepare_metrics_dir() -> Path:
    """Empty (or create) this role's metrics directory and name it to the workers to come."""
    path = metrics_dir()
    shutil.rmtree(path, ignore_errors=True)  # the counts of a previous run start again from zero
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)  # whatever the umask: the workers' files in it count who asked what
    os.environ[ENV] = str(path)
    return path


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges; its counters stay counted."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
