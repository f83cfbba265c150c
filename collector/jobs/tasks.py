"""The export task on Django's task API: it carries only the job's id; the row holds the rest."""

from __future__ import annotations

from django.conf import settings
from django_tasks import task

from collector.jobs import runner


@task(queue_name=settings.EXPORT_QUEUE)
def run_export(export_id: int) -> str:
    """Run the next attempt of export ``export_id`` (collector.jobs.runner)."""
    return runner.run(export_id, requeue=enqueue)


def enqueue(export_id: int) -> None:
    """Queue an attempt of export ``export_id`` on the configured backend (the database, or RQ)."""
    run_export.enqueue(export_id)
