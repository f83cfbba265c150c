"""The page and the admin under their Content-Security-Policy, in a real headless chromium: nothing refused."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.collector.live import manage
from tests.collector.test_live import ANALYST, live_collector

selenium = pytest.importorskip("selenium", reason="selenium is not installed")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="chromium and chromedriver are not installed (Debian: chromium chromium-driver)",
    ),
]
USER, PASSWORD = "chief", "a long and careful passphrase"
# Pages with the admin's scripts at work: its sidebar, its filters, its date and time widgets.
PAGES = (
    "/ui/",
    "/admin/",
    "/admin/collector/requestlog/",
    "/admin/collector/apikey/add/",
    "/admin/auth/user/1/change/",
    "/admin/auth/user/1/password/",
)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def test_nothing_of_the_page_or_the_admin_is_refused_by_their_policy(tmp_path, browser):
    env = {"DJANGO_SECURE_COOKIES": "false"}  # the session cookie over plain HTTP
    with live_collector(tmp_path, {}, {ANALYST: ["1"]}, **env) as (collector, _, live_env):
        make = "from django.contrib.auth.models import User\n"
        make += f"User.objects.create_superuser({USER!r}, '', {PASSWORD!r})\n"
        manage(live_env, "shell", "-c", make)
        browser.get(f"{collector.url}/admin/login/")
        browser.find_element(By.NAME, "username").send_keys(USER)
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        refused = []
        for path in PAGES:
            browser.get(f"{collector.url}{path}")
            assert browser.find_elements(By.TAG_NAME, "body"), path
            logs = [entry["message"] for entry in browser.get_log("browser")]
            refused += [f"{path}: {message}" for message in logs if "Content Security Policy" in message]
        assert "logout" in browser.page_source.lower() or "log out" in browser.page_source.lower()
    assert refused == []
