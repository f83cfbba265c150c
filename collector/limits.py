"""Per-key limits shared by every worker and collector on one database: request rate, running downloads.

- The rate: one row per key and time window, counted up with a single upsert statement per request
  (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``, SQLite 3.35+ and PostgreSQL): atomic across
  processes without a read-modify-write, and no cache table round trips. A fixed window: a client may
  burst twice the rate across a window boundary, never more.
- Downloads: ``PAR_KEY_STREAMS`` slots per holder; a running download holds one row, unique on
  (holder, slot), so two workers can never take the same slot. A row carries a lease renewed while the
  download streams: a worker killed mid-download frees its slot when the lease runs out.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

# A download's slot is leased this long and renewed every STREAM_RENEW while it streams.
STREAM_LEASE = timedelta(seconds=120)
STREAM_RENEW = 30.0


class RequestRate(models.Model):
    """How many requests one key made in one time window."""

    key_id = models.BigIntegerField()
    period_start = models.BigIntegerField(help_text="start of the window, in seconds since the epoch")
    requests = models.PositiveIntegerField(default=0)

    class Meta:
        app_label = "collector"
        constraints = [
            models.UniqueConstraint(fields=["key_id", "period_start"], name="collector_rate_key_window")
        ]

    @classmethod
    def count(cls, key_id: int, period: int, now: float | None = None) -> tuple[int, float]:
        """Count one request of ``key_id``: (requests in this window so far, seconds left in it)."""
        now = time.time() if now is None else now
        start = int(now // period) * period
        table = connection.ops.quote_name(cls._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (key_id, period_start, requests) VALUES (%s, %s, 1) "
                f"ON CONFLICT (key_id, period_start) DO UPDATE SET requests = {table}.requests + 1 "
                "RETURNING requests",
                [key_id, start],
            )
            (requests,) = cursor.fetchone()
            if requests == 1:  # the key's first request of a window: forget its older windows
                cursor.execute(
                    f"DELETE FROM {table} WHERE key_id = %s AND period_start < %s", [key_id, start]
                )
        return requests, start + period - now


class KeyStream(models.Model):
    """A download running for a key (or a web page user): one of its PAR_KEY_STREAMS slots."""

    holder = models.CharField(max_length=40, help_text="key:<id> or user:<id>")
    slot = models.PositiveSmallIntegerField()
    started = models.DateTimeField(default=timezone.now)
    expires = models.DateTimeField()

    class Meta:
        app_label = "collector"
        constraints = [
            models.UniqueConstraint(fields=["holder", "slot"], name="collector_stream_holder_slot")
        ]

    @classmethod
    def acquire(cls, holder: str, limit: int) -> KeyStream | None:
        """A free slot of ``holder`` (None when all ``limit`` are taken by running downloads)."""
        for _ in range(3):
            now = timezone.now()
            used = {
                slot: expires
                for slot, expires in cls.objects.filter(holder=holder).values_list("slot", "expires")
            }
            free = [slot for slot in range(limit) if slot not in used]
            if not free:
                expired = [slot for slot, expires in used.items() if expires <= now]
                if not expired:
                    return None
                # a worker died holding it: take it over, if nobody else did meanwhile
                taken = cls.objects.filter(holder=holder, slot=expired[0], expires__lte=now).update(
                    started=now, expires=now + STREAM_LEASE
                )
                if taken:
                    return cls.objects.get(holder=holder, slot=expired[0])
                continue
            try:
                with transaction.atomic():
                    return cls.objects.create(
                        holder=holder, slot=free[0], started=now, expires=now + STREAM_LEASE
                    )
            except IntegrityError:
                continue  # another worker took that slot first: look again
        return None

    def renew(self) -> None:
        """Extend the lease of a download still streaming."""
        type(self).objects.filter(pk=self.pk).update(expires=timezone.now() + STREAM_LEASE)

    def release(self) -> None:
        type(self).objects.filter(pk=self.pk).delete()
