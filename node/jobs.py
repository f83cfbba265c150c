"""Index builds on several cores: worker processes that die with the filer, never outlive it.

``runfiler --jobs N`` and ``reindex --jobs N`` hand the index builds (the work that reads a whole
capture) to N forked worker processes, and keep every other step (planning, logging, moving,
counting) in the parent, in file order. Crash safety is the single process's (node/filer.py): a
worker writes one index atomically (engine/durable.py) and nothing else, so a worker killed at
any moment leaves the old index or the new one, and a temporary file the next pass removes.

Workers never outlive the parent: each asks the kernel to kill it when its parent dies
(``PR_SET_PDEATHSIG``), and holds none of the parent's locks (engine/durable.py closes them in a
forked child), so a filer killed with its workers busy is followed by a clean rerun.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor, Future
from typing import Any, TypeVar

log = logging.getLogger("node.filer")

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def cores_available() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    counter = getattr(os, "process_cpu_count", None)  # Python 3.13
    if counter is not None:
        return counter() or 1
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def jobs_count(text: str) -> int:
    """The value of a ``--jobs`` option: a whole number of processes, 1 or more."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


jobs_count.__name__ = "number of processes (1 or more)"  # argparse names the type in its error


class InlineExecutor(Executor):
    """Runs each job at once in this process: ``--jobs 1``, the same path without workers."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def die_with_parent(signum: int) -> bool:
    """Have the kernel send ``signum`` to this process when its parent dies (Linux); whether it will.

    The "parent" is the thread that forked this process: fork from the main thread. The request
    survives ``exec``, so a ``subprocess`` ``preexec_fn`` can make it for a child program.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux
        return False


def _init_worker(parent: int) -> None:
    """In a new worker: die with the parent, leave Ctrl-C and SIGTERM to it."""
    die_with_parent(signal.SIGKILL)  # elsewhere than on Linux a worker outlives a killed parent by a job
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(1)
    # Ctrl-C reaches the whole process group, systemd's stop the whole service: the filer stops
    # after the files at hand, whose workers finish them (a worker is killed only with the filer).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def worker_pool(jobs: int) -> Executor:
    """An executor of ``jobs`` worker processes (forked, so tests' patches reach them), or inline."""
    if jobs <= 1:
        return InlineExecutor()
    # Loaded by processes that start workers only (a cron pass with one capture to file starts none).
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from engine import native  # numba: loaded by processes that build indexes only

    native.load()  # the build's compiled code made ready once here, not once in every worker
    return ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )


class Workers:
    """Jobs handed to ``size`` worker processes (forked when the first job comes); a with-block.

    A worker that dies (the OOM killer, a crash) breaks the pool: the jobs it had fail with
    BrokenProcessPool, and the next job gets a new pool. Leaving the block waits for the jobs
    already handed out.
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._pool: Executor | None = None

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        if self._pool is None:
            self._pool = worker_pool(self.size)
        try:
            return self._pool.submit(fn, *args)
        except BrokenExecutor:  # BrokenProcessPool
            log.warning("A worker process died; starting new ones")
            self._pool.shutdown(wait=True)
            self._pool = worker_pool(self.size)
            return self._pool.submit(fn, *args)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
