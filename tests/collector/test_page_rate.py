"""A web page user's calls are counted by PAR_KEY_RATE as a key's are (under gunicorn)."""

from __future__ import annotations

import pytest
import requests

from tests.collector.live import manage
from tests.collector.test_live import ANALYST, live_collector

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"


def make_accounts(env: dict[str, str], *names: str) -> None:
    make = "from django.contrib.auth.models import User\n"
    make += "".join(f"User.objects.create_user({name!r}, password={PASSWORD!r})\n" for name in names)
    manage(env, "shell", "-c", make)


def logged_in(url: str, name: str) -> requests.Session:
    """A browser's session of a Django account, logged in through the page's form."""
    browser = requests.Session()
    browser.get(f"{url}/ui/login", timeout=10)
    form = {"username": name, "password": PASSWORD, "csrfmiddlewaretoken": browser.cookies["csrftoken"]}
    answer = browser.post(f"{url}/ui/login", form, allow_redirects=False, timeout=10)
    assert answer.status_code == 302 and answer.headers["Location"] == "/ui/", answer.text
    return browser


def test_a_page_users_calls_are_counted_by_the_rate_and_leave_a_keys_alone(tmp_path):
    env = {"PAR_KEY_RATE": "3", "DJANGO_SECURE_COOKIES": "false"}  # cookies over plain HTTP
    with live_collector(tmp_path, {}, {ANALYST: ["1"]}, **env) as (collector, _, live_env):
        make_accounts(live_env, "analyst", "colleague")
        browser, other = logged_in(collector.url, "analyst"), logged_in(collector.url, "colleague")
        calls = [browser.get(f"{collector.url}/ping", timeout=10) for _ in range(4)]
        others = other.get(f"{collector.url}/ping", timeout=10)
        keys = requests.get(f"{collector.url}/ping", {"api_key": ANALYST}, timeout=10)
    assert [call.status_code for call in calls] == [200, 200, 200, 429]
    assert "error" in calls[-1].json() and calls[-1].headers["Retry-After"]
    assert others.status_code == keys.status_code == 200  # each holder has a rate of its own
