"""The export job's row: what was asked, by whom, how far it got, and where its file is.

State changes are single conditional UPDATEs (``WHERE state = ... AND attempts = ...``): a worker
that was given up on (its lease ran out) and comes back finds its row no longer matches and
stops, so two attempts never both finish one job, and a cancel is never overwritten.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

ERROR_MAX = 300


class State(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DELETED = "deleted"
    EXPIRED = "expired"


# A job in one of these holds its query: the same query asked again by the same holder is this job.
LIVE = (State.QUEUED, State.RUNNING, State.DONE)
ACTIVE = (State.QUEUED, State.RUNNING)


class ExportInfo(TypedDict):
    """A job as GET /exports/<id> shows it."""

    id: int
    state: str
    query: str
    nodes: dict[str, str]
    packets: int
    bytes: int
    progress: float
    created: datetime
    started: datetime | None
    finished: datetime | None
    expires: datetime | None
    error: str
    download: str | None
    sha256: str
    attempts: int


class ExportQuerySet(models.QuerySet["Export"]):
    def visible_to(self, grant: Any) -> ExportQuerySet:
        """The jobs ``grant`` (an API key or a page user's grant) may see: its own; an admin's, all."""
        return self if grant.admin else self.filter(holder=grant.holder)


class Export(models.Model):
    """One export job."""

    holder = models.CharField(max_length=40, db_index=True, help_text="key:<id> or user:<id>")
    key_prefix = models.CharField(max_length=16, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="par_exports"
    )
    query = models.TextField(help_text="the parameters as asked (credentials left out)")
    request = models.JSONField(help_text="the parsed request: nodes and exactly what each is sent")
    query_hash = models.CharField(max_length=64, help_text="sha256 of the parsed request")
    state = models.CharField(max_length=12, choices=State.choices, default=State.QUEUED, db_index=True)
    nodes = models.JSONField(default=dict, blank=True, help_text="per node id: its outcome")
    packets = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0, help_text="bytes written (the file's size once done)")
    estimate = models.BigIntegerField(null=True, blank=True, help_text="the nodes' estimate, in bytes")
    progress = models.FloatField(default=0.0)
    attempts = models.PositiveSmallIntegerField(default=0)
    created = models.DateTimeField(default=timezone.now)
    started = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True, help_text="last sign of life of its worker")
    finished = models.DateTimeField(null=True, blank=True)
    expires = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=ERROR_MAX, blank=True)
    file_name = models.CharField(max_length=100, blank=True)
    content_type = models.CharField(max_length=40, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)

    objects = ExportQuerySet.as_manager()

    class Meta:
        app_label = "collector"
        ordering = ["-created", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["holder", "query_hash"],
                condition=Q(state__in=LIVE),
                name="collector_export_one_live_per_query",
            )
        ]

    def __str__(self) -> str:
        return f"export {self.pk} ({self.state})"

    # ------------------------------------------------------------ files

    @property
    def path(self) -> Path | None:
        return Path(settings.PAR_EXPORT_DIR) / self.file_name if self.file_name else None

    def remove_file(self) -> None:
        path = self.path
        if path is not None:
            path.unlink(missing_ok=True)

    # ------------------------------------------------------------ state changes

    def _mine(self) -> models.QuerySet[Export]:
        """This row while it is still the attempt this process runs."""
        return Export.objects.filter(pk=self.pk, state=State.RUNNING, attempts=self.attempts)

    @classmethod
    def claim(cls, export_id: int) -> Export | None:
        """Start the next attempt of a queued job; None when it is not queued (cancelled, taken)."""
        now = timezone.now()
        taken = cls.objects.filter(pk=export_id, state=State.QUEUED).update(
            state=State.RUNNING,
            attempts=F("attempts") + 1,
            started=now,
            heartbeat=now,
            packets=0,
            bytes=0,
            progress=0.0,
        )
        return cls.objects.get(pk=export_id) if taken else None

    def report(self, **progress: Any) -> bool:
        """Write progress (and a heartbeat); False when the job is no longer this attempt's."""
        return bool(self._mine().update(heartbeat=timezone.now(), **progress))

    def succeed(self, **result: Any) -> bool:
        """Mark the attempt done; False when it was cancelled or given up on meanwhile."""
        now = timezone.now()
        expires = now + timedelta(hours=settings.PAR_EXPORT_TTL)
        return bool(
            self._mine().update(
                state=State.DONE, finished=now, expires=expires, progress=1.0, error="", **result
            )
        )

    def attempt_failed(self, reason: str) -> bool:
        """This attempt failed: queued again while attempts are left (True), else failed."""
        return Export.retry_or_fail(self.pk, self.attempts, reason)

    @classmethod
    def retry_or_fail(cls, export_id: int, attempt: int, reason: str) -> bool:
        """Attempt ``attempt`` of a running job ended without a file: True when it is queued again."""
        mine = cls.objects.filter(pk=export_id, state=State.RUNNING, attempts=attempt)
        if attempt < settings.PAR_EXPORT_ATTEMPTS:
            note = f"attempt {attempt} of {settings.PAR_EXPORT_ATTEMPTS} failed: {reason}"[:ERROR_MAX]
            return bool(mine.update(state=State.QUEUED, error=note, heartbeat=None))
        note = f"failed after {attempt} attempts: {reason}"[:ERROR_MAX]
        mine.update(state=State.FAILED, error=note, finished=timezone.now())
        return False

    def fail(self, reason: str) -> None:
        """Failed for good, whatever attempts are left (a refusal that another attempt cannot change)."""
        Export.objects.filter(pk=self.pk, state__in=ACTIVE).update(
            state=State.FAILED, error=reason[:ERROR_MAX], finished=timezone.now()
        )

    def cancel_or_delete(self) -> None:
        """DELETE: a queued or running job is cancelled, a finished one's file deleted."""
        now = timezone.now()
        if Export.objects.filter(pk=self.pk, state__in=ACTIVE).update(state=State.CANCELLED, finished=now):
            self.state = State.CANCELLED  # a running attempt sees it at its next report and stops
        elif Export.objects.filter(pk=self.pk, state=State.DONE).update(state=State.DELETED):
            self.state = State.DELETED
            self.remove_file()
        self.refresh_from_db()

    def expire(self) -> bool:
        """A done job's file deleted, the job ``expired``; False when it was no longer done."""
        if Export.objects.filter(pk=self.pk, state=State.DONE).update(state=State.EXPIRED):
            self.remove_file()
            return True
        return False

    # ------------------------------------------------------------ display

    def to_dict(self) -> ExportInfo:
        return ExportInfo(
            id=self.pk,
            state=self.state,
            query=self.query,
            nodes=self.nodes,
            packets=self.packets,
            bytes=self.bytes,
            progress=round(self.progress, 4),
            created=self.created,
            started=self.started,
            finished=self.finished,
            expires=self.expires,
            error=self.error,
            download=f"/exports/{self.pk}/data.pcap" if self.state == State.DONE else None,
            sha256=self.sha256,
            attempts=self.attempts,
        )
