"""manage.py runexports: the export worker, on the configured task backend, with its housekeeping."""

from __future__ import annotations

import logging
import os
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from collector.jobs import runner, tasks
from collector.jobs.sweep import sweep

log = logging.getLogger("collector.jobs")


def sweep_loop(every: float, stop: threading.Event) -> None:
    """The housekeeping (collector.jobs.sweep) every ``every`` seconds until ``stop``."""
    while not stop.wait(every):
        try:
            sweep(requeue=tasks.enqueue)
        except Exception:
            log.exception("the export sweep failed")
        finally:
            connection.close()


def run_database_worker(interval: float, once: bool) -> None:
    """The django-tasks-db worker on the export queue."""
    from django_tasks_db.management.commands.db_worker import Worker

    worker = Worker(
        queue_names=[settings.EXPORT_QUEUE],
        interval=interval,
        batch=once,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id=f"runexports-{threading.get_native_id()}",
        excluded_queue_names=[],
    )

    def stop(signum, frame) -> None:
        runner.SHUTDOWN.set()  # the running attempt ends now and is queued again
        worker.shutdown(signum, frame)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    worker.run()


def run_rq_worker(once: bool) -> None:
    """An RQ worker on the export queue, in this process (no fork per job: a kill stops the job)."""
    import django_rq
    from django_tasks_rq.backend import Job
    from rq.worker import SimpleWorker

    worker = django_rq.get_worker(
        settings.EXPORT_QUEUE,
        job_class=Job,
        worker_class=SimpleWorker,  # type: ignore[arg-type]  # a Worker; django-rq's hint names the base only
    )

    def stop(signum, frame) -> None:
        runner.SHUTDOWN.set()
        worker.request_stop(signum, frame)

    worker._install_signal_handlers = lambda: None  # type: ignore[method-assign]  # ours: the attempt stops too
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    worker.work(burst=once, with_scheduler=False)


class Command(BaseCommand):
    help = "Run export jobs (on the database, or on Redis with PAR_TASKS_URL), and expire their files."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between looks at the queue")
        parser.add_argument("--once", action="store_true", help="run the jobs queued now, then exit")
        parser.add_argument(
            "--nice",
            type=int,
            default=10,
            help="CPU niceness to add (default 10): exports yield to the collector's own answers",
        )

    def handle(self, *args, interval: float, once: bool, nice: int, **options) -> None:
        if nice:
            os.nice(nice)
        stop = threading.Event()
        every = min(10.0, settings.PAR_EXPORT_LEASE / 3)
        sweeper = threading.Thread(target=sweep_loop, args=(every, stop), name="export-sweep", daemon=True)
        if not once:
            sweep(requeue=tasks.enqueue)
            connection.close()
            sweeper.start()
        backend = "redis" if settings.PAR_TASKS_URL else "database"
        self.stdout.write(f"runexports: jobs from the {backend}, queue {settings.EXPORT_QUEUE}")
        try:
            if settings.PAR_TASKS_URL:
                run_rq_worker(once)
            else:
                run_database_worker(interval, once)
        finally:
            stop.set()
