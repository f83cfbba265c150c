"""Per-key limits kept in the database: the request rate and the downloads running at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from collector import limits
from collector.limits import KeyStream, RequestRate


@pytest.fixture
def worker(monkeypatch):
    """The rate's shares as one worker holds them; ``worker()`` again is another worker's."""

    def another() -> None:
        monkeypatch.setattr(limits, "_leases", {})

    another()
    return another


def counted(key_id: int = 1) -> int:
    return RequestRate.objects.get(key_id=key_id).requests


def test_the_rate_counts_each_keys_requests_per_window(db):
    assert [RequestRate.count(1, 60, now=600.0)[0] for _ in range(3)] == [1, 2, 3]
    assert RequestRate.count(2, 60, now=601.0)[0] == 1  # another key has its own count
    count, wait = RequestRate.count(1, 60, now=659.5)
    assert (count, wait) == (4, 0.5)


def test_a_new_window_starts_from_one_and_forgets_the_old_ones(db):
    RequestRate.count(1, 60, now=600.0)
    RequestRate.count(1, 60, now=610.0)
    assert RequestRate.count(1, 60, now=660.0)[0] == 1
    assert list(RequestRate.objects.filter(key_id=1).values_list("period_start", flat=True)) == [660]


def test_a_worker_claims_a_share_of_the_rate_and_admits_it_without_a_statement(db, worker):
    assert limits.lease_size(600) == 12
    assert all(RequestRate.admit(1, "k1", 600, 60, now=600.0)[0] for _ in range(12))
    assert counted() == 12
    with CaptureQueriesContext(connection) as queries:  # not the window's first: no old ones to forget
        assert all(RequestRate.admit(1, "k1", 600, 60, now=601.0)[0] for _ in range(12))
    assert len(queries.captured_queries) == 1
    assert counted() == 24


def test_under_a_hundred_a_minute_each_request_is_counted(db, worker):
    assert limits.lease_size(99) == 1
    for n in range(1, 4):
        assert RequestRate.admit(1, "k1", 3, 60, now=600.0) == (True, 60.0)
        assert counted() == n
    assert RequestRate.admit(1, "k1", 3, 60, now=630.0) == (False, 30.0)


def test_workers_together_never_admit_more_than_the_rate(db, worker):
    assert RequestRate.admit(1, "k1", 100, 60, now=600.0)[0]  # the first worker claims 2, admits 1
    worker()
    second = sum(RequestRate.admit(1, "k1", 100, 60, now=600.0)[0] for _ in range(120))
    assert second == 98
    # A share that passed the rate is cut to what fits; the first worker still has its one request.
    first_lease = {(1, "k1", 100, 60): limits._Lease(600, left=1)}
    limits._leases = first_lease
    assert RequestRate.admit(1, "k1", 100, 60, now=601.0)[0]
    assert not RequestRate.admit(1, "k1", 100, 60, now=602.0)[0]


def test_a_spent_window_refuses_without_a_statement_until_it_ends(db, worker):
    assert RequestRate.admit(1, "k1", 1, 60, now=600.0)[0]
    assert not RequestRate.admit(1, "k1", 1, 60, now=601.0)[0]
    with CaptureQueriesContext(connection) as queries:
        assert RequestRate.admit(1, "k1", 1, 60, now=602.0) == (False, 58.0)
    assert queries.captured_queries == []
    assert RequestRate.admit(1, "k1", 1, 60, now=660.0)[0]


def test_a_key_with_another_keys_old_id_does_not_get_its_share(db, worker):
    assert RequestRate.admit(1, "deleted", 600, 60, now=600.0)[0]
    assert RequestRate.admit(1, "new", 600, 60, now=600.0)[0]
    assert counted() == 24  # a share of its own was claimed


def test_a_holder_gets_at_most_its_limit_of_download_slots(db):
    slots = [KeyStream.acquire("key:1", 2) for _ in range(3)]
    assert slots[0] is not None and slots[1] is not None and slots[2] is None
    assert {slots[0].slot, slots[1].slot} == {0, 1}
    assert KeyStream.acquire("key:2", 2) is not None  # others unaffected
    slots[0].release()
    again = KeyStream.acquire("key:1", 2)
    assert again is not None and again.slot == slots[0].slot


def test_a_slot_whose_lease_ran_out_is_taken_over(db):
    """A worker killed mid-download never releases its slot: its lease frees it."""
    held = [KeyStream.acquire("key:1", 1)]
    assert KeyStream.acquire("key:1", 1) is None
    KeyStream.objects.filter(pk=held[0].pk).update(expires=timezone.now() - timedelta(seconds=1))
    taken = KeyStream.acquire("key:1", 1)
    assert taken is not None and taken.expires > timezone.now()
    assert KeyStream.acquire("key:1", 1) is None


def test_a_renewed_lease_keeps_the_slot(db):
    slot = KeyStream.acquire("key:1", 1)
    KeyStream.objects.filter(pk=slot.pk).update(expires=timezone.now() + timedelta(seconds=1))
    slot.renew()
    assert KeyStream.objects.get(pk=slot.pk).expires > timezone.now() + timedelta(seconds=60)
