"""API keys: random, shown once, stored only as a keyed hash, used-at recorded sparingly."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from collector import keys
from collector.models import ApiKey


def test_a_new_key_has_at_least_122_random_bits():
    key = keys.generate_key()
    assert key.startswith("par_")
    random_part = key[len("par_") :]
    assert len(random_part) * 6 >= 122  # url-safe base64: 6 bits per character
    assert len({keys.generate_key() for _ in range(1000)}) == 1000


def test_the_key_shape_takes_new_keys_and_the_seeds_uuids_only():
    for _ in range(200):
        assert keys.looks_like_key(keys.generate_key())
    assert keys.looks_like_key("par_" + "a" * 40) and keys.looks_like_key("par_" + "a" * 64)
    assert keys.looks_like_key("d5c3d52e-d42c-41ff-bbfa-d3e802770ee1")
    assert keys.looks_like_key("D5C3D52E-D42C-41FF-BBFA-D3E802770EE1")
    assert not keys.looks_like_key("par_" + "a" * 39)
    assert not keys.looks_like_key("par_" + "a" * 65)
    assert not keys.looks_like_key("par_" + "a" * 100_000)


def test_a_seed_uuid_key_and_a_createapikey_key_authenticate(db):
    _, made = ApiKey.issue("fresh")
    seed = "d5c3d52e-d42c-41ff-bbfa-d3e802770ee1"
    imported = ApiKey(name="seed")
    imported.set_key(seed)
    imported.save()
    assert ApiKey.objects.authenticate(made).name == "fresh"
    assert ApiKey.objects.authenticate(seed.upper()) == imported


def test_the_shown_prefix_leaves_enough_unseen():
    key = keys.generate_key()
    prefix = keys.shown_prefix(key)
    assert key.startswith(prefix)
    assert (len(key) - len(prefix)) * 6 >= 122


def test_the_stored_hash_is_an_hmac_under_the_pepper(node1_key):
    expected = hmac.new(settings.PAR_KEY_PEPPER.encode(), node1_key.key.encode(), hashlib.sha256).hexdigest()
    assert node1_key.row.key_hash == expected
    with override_settings(PAR_KEY_PEPPER="another pepper"):
        assert keys.key_hash(node1_key.key) != expected


def test_the_database_holds_no_key_in_clear(api, admin_key, node1_key, nogrant_key):
    api.get_as(node1_key, "/ping")
    api.get("/data.pcap", {"api_key": nogrant_key.key, "node_id": "1"})
    everything = []
    for model in apps.get_models():
        if model._meta.managed:  # django-rq's dashboard "model" has no table
            everything += [repr(row) for row in model.objects.values_list()]
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            everything += [repr(row) for row in cursor.fetchall()]
    dump = "\n".join(everything)
    assert node1_key.row.prefix in dump  # the dump did reach the keys
    for actor in (admin_key, node1_key, nogrant_key):
        assert actor.key not in dump
        assert actor.key[len(actor.row.prefix) :] not in dump


def test_last_used_is_written_at_most_once_a_minute(api, node1_key, monkeypatch):
    assert node1_key.row.last_used is None
    assert api.get_as(node1_key, "/ping").status_code == 200
    first = ApiKey.objects.get(pk=node1_key.row.pk).last_used
    assert first is not None
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            api.get_as(node1_key, "/ping")
    key_table = connection.ops.quote_name(ApiKey._meta.db_table)
    assert not [q for q in queries.captured_queries if q["sql"].startswith(f"UPDATE {key_table}")]
    assert ApiKey.objects.get(pk=node1_key.row.pk).last_used == first

    later = timezone.now() + timedelta(seconds=61)
    monkeypatch.setattr("collector.models.timezone.now", lambda: later)
    api.get_as(node1_key, "/ping")
    assert ApiKey.objects.get(pk=node1_key.row.pk).last_used == later


def test_a_stale_copy_does_not_move_last_used_back(node1_key):
    now = timezone.now()
    ApiKey.objects.filter(pk=node1_key.row.pk).update(last_used=now)
    stale = ApiKey.objects.get(pk=node1_key.row.pk)
    stale.last_used = now - timedelta(minutes=5)  # another collector's old view of the row
    stale.touch()
    assert ApiKey.objects.get(pk=node1_key.row.pk).last_used == now


def test_issue_returns_a_key_that_authenticates(db):
    row, key = ApiKey.issue("x")
    assert ApiKey.objects.authenticate(key) == row
    assert row.prefix == keys.shown_prefix(key)
