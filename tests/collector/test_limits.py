"""Per-key limits kept in the database: the request rate and the downloads running at once."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from collector.limits import KeyStream, RequestRate


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
