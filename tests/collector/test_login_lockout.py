"""Admin logins: failures counted per username and address in the database, locked out, each one logged."""

from __future__ import annotations

import logging
from ipaddress import ip_network

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

PASSWORD = "a long passphrase 42"


@pytest.fixture
def admin_user(db) -> User:
    return User.objects.create_superuser("root", "root@example.org", PASSWORD)


def log_in(password: str, remote: str = "198.51.100.7", **headers: str):
    client = Client(REMOTE_ADDR=remote)
    answer = client.post("/admin/login/?next=/admin/", {"username": "root", "password": password}, **headers)
    return client, answer


def logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_thirty_wrong_passwords_then_the_right_one_does_not_log_in(admin_user, caplog):
    caplog.set_level(logging.WARNING, logger="axes")
    for _ in range(30):
        _, answer = log_in("guess")
        assert answer.status_code in (200, 429)  # the form again, then the lockout
    client, answer = log_in(PASSWORD)
    assert answer.status_code == 429
    assert not logged_in(client)
    failures = [r for r in caplog.records if "login failure by" in r.getMessage()]
    assert len(failures) == 31  # every wrong password, and the right one sent while locked out
    assert all("198.51.100.7" in r.getMessage() and PASSWORD not in r.getMessage() for r in failures)


def test_the_lockout_is_per_username_and_address(admin_user):
    for _ in range(10):
        log_in("guess", remote="198.51.100.7")
    client, _ = log_in(PASSWORD, remote="203.0.113.5")  # the owner, elsewhere
    assert logged_in(client)


def test_a_few_failures_then_the_right_password_logs_in(admin_user):
    for _ in range(3):
        log_in("guess")
    client, _ = log_in(PASSWORD)
    assert logged_in(client)


@override_settings(PAR_TRUSTED_PROXIES=[ip_network("127.0.0.1/32")])
def test_behind_a_trusted_proxy_failures_count_for_the_forwarded_address(admin_user, caplog):
    caplog.set_level(logging.WARNING, logger="axes")
    for _ in range(10):
        log_in("guess", remote="127.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.66")
    assert "192.0.2.66" in caplog.text
    # Another client behind the same proxy is not locked out by them.
    client, _ = log_in(PASSWORD, remote="127.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.1")
    assert logged_in(client)
