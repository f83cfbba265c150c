"""Per-key limits shared by every worker and collector on one database: request rate, running downloads.

- The rate: one row per key and time window, counted up with a single upsert statement
  (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``, SQLite 3.35+ and PostgreSQL): atomic across
  processes without a read-modify-write, and no cache table round trips. A fixed window: a client may
  burst twice the rate across a window boundary, never more. A worker does not commit each request:
  it claims a share of the window's requests at once (``lease_size``: one fiftieth of the rate, so
  12 of 600 a minute; one at a time under 100 a minute) and admits that many before it claims again.
  What every worker and collector admits together never passes the rate; a key near its rate may be
  refused up to a share per other worker early, while another holds requests it has not used.
- Downloads: ``PAR_KEY_STREAMS`` slots per holder; a running download holds one row, unique on
  (holder, slot), so two workers can never take the same slot. A row carries a lease renewed while the
  download streams: a worker killed mid-download frees its slot when the lease runs out.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, models
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
    def count(cls, key_id: int, period: int, now: float | None = None, claim: int = 1) -> tuple[int, float]:
        """Count ``claim`` requests of ``key_id``: (requests in this window so far, seconds left in it)."""
        now = time.time() if now is None else now
        start = int(now // period) * period
        table = connection.ops.quote_name(cls._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (key_id, period_start, requests) VALUES (%s, %s, %s) "
                f"ON CONFLICT (key_id, period_start) DO UPDATE SET requests = {table}.requests + %s "
                "RETURNING requests",
                [key_id, start, claim, claim],
            )
            (requests,) = cursor.fetchone()
            if requests == claim:  # the key's first claim of a window: forget its older windows
                cursor.execute(
                    f"DELETE FROM {table} WHERE key_id = %s AND period_start < %s", [key_id, start]
                )
        return requests, start + period - now

    @classmethod
    def admit(
        cls, key_id: int, holder: str, allowed: int, period: int, now: float | None = None
    ) -> tuple[bool, float]:
        """Whether one more request of ``key_id`` is within ``allowed`` a ``period``, and the window's seconds left.

        From this worker's leased share when it has one left (no statement), else a new share is
        claimed (one statement). ``holder`` tells apart keys that had the same id (a deleted key's).
        """
        now = time.time() if now is None else now
        start = int(now // period) * period
        lease_key = (key_id, holder, allowed, period)
        with _leases_lock:
            lease = _leases.get(lease_key)
            if lease is not None and lease.start == start and (lease.left > 0 or lease.spent):
                if lease.spent:  # the window's count only grows: refused until it ends, no statement
                    return False, start + period - now
                lease.left -= 1
                return True, start + period - now
        share = lease_size(allowed)
        requests, wait = cls.count(key_id, period, now, claim=share)
        granted = min(share, allowed - (requests - share))  # what of the claim fits under the rate
        with _leases_lock:
            lease = _leases.get(lease_key)
            if lease is None or lease.start != start:
                if len(_leases) >= LEASES_KEPT:
                    _leases.clear()
                lease = _leases[lease_key] = _Lease(start)
            if granted <= 0:
                lease.spent = True
                return False, wait
            lease.left += granted - 1  # added: another thread of this worker may have claimed too
        return True, wait


def lease_size(allowed: int) -> int:
    """How many requests a worker claims at once of a key's ``allowed`` a window."""
    return max(1, allowed // 50)


@dataclass
class _Lease:
    start: int  # the window it belongs to
    left: int = 0  # requests claimed and not yet admitted
    spent: bool = False  # the window's rate is all claimed, by every worker together


LEASES_KEPT = 10_000  # keys at once; past that the shares are dropped (their requests stay counted)
_leases: dict[tuple[int, str, int, int], _Lease] = {}
_leases_lock = threading.Lock()


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
        """A free slot of ``holder`` (None when all ``limit`` are taken by running downloads).

        One statement: insert the lowest slot no running download holds, or take over one whose
        lease ran out (a worker died holding it). Two workers racing for one slot: the unique
        constraint lets one have it, the other looks again.
        """
        table = connection.ops.quote_name(cls._meta.db_table)
        slots = ", ".join(f"({n})" for n in range(limit))
        sql = (
            f"INSERT INTO {table} (holder, slot, started, expires) "
            f"SELECT %s, column1, %s, %s FROM (VALUES {slots}) AS free "
            f"WHERE column1 NOT IN (SELECT slot FROM {table} WHERE holder = %s AND expires > %s) "
            "ORDER BY column1 LIMIT 1 "
            "ON CONFLICT (holder, slot) DO UPDATE SET started = excluded.started, expires = excluded.expires "
            f"WHERE {table}.expires <= %s RETURNING id, slot"
        )
        for _ in range(3):
            now = timezone.now()
            expires = now + STREAM_LEASE
            at, until = (connection.ops.adapt_datetimefield_value(t) for t in (now, expires))
            with connection.cursor() as cursor:
                cursor.execute(sql, [holder, at, until, holder, at, at])
                row = cursor.fetchone()
            if row is not None:
                return cls(pk=row[0], holder=holder, slot=row[1], started=now, expires=expires)
            if cls.objects.filter(holder=holder, expires__gt=now).count() >= limit:
                return None  # every slot runs a download
        return None

    def release(self) -> None:
        table = connection.ops.quote_name(type(self)._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE id = %s", [self.pk])

    def renew(self) -> None:
        """Extend the lease of a download still streaming."""
        type(self).objects.filter(pk=self.pk).update(expires=timezone.now() + STREAM_LEASE)
