"""The collector behind the shipped nginx sample with the shipped production settings
(deploy/collector.env.example, completed as an operator does): its static files load over TLS.

Real processes: nginx (deploy/nginx-par.conf as shipped, but for ports, certificate and logs) and
the collector under gunicorn. Without ``X-Forwarded-Proto`` on ``/static/``, a
``DJANGO_SECURE_SSL_REDIRECT=true`` collector answered every static file with a 301 to itself.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.collector.live import live_database, manage
from tests.deploy.nginxrun import certificate, shipped_nginx
from tests.deploy.test_nginx import NGINX
from tests.deploy.test_samples import sample_env
from tests.servers import free_port, gunicorn

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx-light)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed for the test certificate"),
]

HOST = "par.example.org"  # the sample's DJANGO_ALLOWED_HOSTS and server_name
USER, PASSWORD = "analyst", "a long and careful passphrase"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@dataclass
class Site:
    url: str  # https://127.0.0.1:<port>, nginx's TLS side
    plain: str  # http://127.0.0.1:<port>, nginx's redirecting side
    cert: Path
    env: dict[str, str]

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        return requests.get(
            f"{self.url}{path}", headers={"Host": HOST}, verify=str(self.cert), timeout=30, **kwargs
        )


def production_env(where: Path) -> dict[str, str]:
    """deploy/collector.env.example with its placeholders replaced, as an operator completes it."""
    env = {k: v for k, v in sample_env("collector.env.example").items() if "change-me" not in v}
    env |= {
        "DJANGO_SECRET_KEY": "k" * 20 + "-production-like-secret-key-of-the-test",
        "PAR_KEY_PEPPER": "pepper",
    }
    env |= {"PAR_NODE_SECRET": "a-node-secret", "PAR_DATA_DIR": str(where)}
    return env


@pytest.fixture(scope="module", params=["fresh", "collected"])
def site(request, tmp_path_factory) -> Iterator[Site]:
    """The collector as installed: before ``collectstatic`` (a fresh install) and after it."""
    where = tmp_path_factory.mktemp(f"site-{request.param}")
    cert, key = certificate(where)
    with live_database(where) as db:
        tls, plain = free_port(), free_port()
        env = production_env(where) | {"DATABASE_URL": db}
        # A browser's Origin names the port; in production it is 443 and the sample's origin is it.
        env["DJANGO_CSRF_TRUSTED_ORIGINS"] = f"https://{HOST}:{tls}"
        if request.param == "collected":
            manage(env, "collectstatic", "--noinput", "--verbosity", "0")
        manage(
            env, "shell", "-c",
            "from django.contrib.auth.models import User; from collector.models import UserGrant;"
            f"u = User.objects.create_user({USER!r}, password={PASSWORD!r}); UserGrant.objects.create(user=u)",
        )  # fmt: skip
        with gunicorn("collector", env) as collector:
            upstream = int(collector.url.rsplit(":", 1)[1])
            listen = {"443": tls, "80": plain}
            with shipped_nginx(
                "nginx-par.conf", where, cert, key, listen=listen, upstream=upstream, tls="443"
            ):
                yield Site(f"https://127.0.0.1:{tls}", f"http://127.0.0.1:{plain}", cert, env)


def test_the_admins_stylesheet_loads_through_nginx(site):
    answer = site.get("/static/admin/css/base.css")
    assert answer.status_code == 200, (answer.status_code, answer.headers.get("Location"))
    assert answer.headers["Content-Type"].startswith("text/css")
    assert "body" in answer.text


def test_every_file_the_login_page_names_loads_through_nginx(site):
    page = site.get("/ui/login")
    assert page.status_code == 200, page.status_code
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
    assert any(a.endswith(".css") for a in assets), page.text
    for asset in assets:
        answer = site.get(asset)
        assert answer.status_code == 200, (asset, answer.status_code, answer.headers.get("Location"))


def test_the_pages_script_loads_through_nginx(site):
    answer = site.get("/static/ui/par.js")
    assert answer.status_code == 200, (answer.status_code, answer.headers.get("Location"))
    assert "javascript" in answer.headers["Content-Type"]


def test_plain_http_is_sent_to_https(site):
    answer = requests.get(
        f"{site.plain}/static/ui/par.css", headers={"Host": HOST}, allow_redirects=False, timeout=30
    )
    assert answer.status_code == 301
    assert answer.headers["Location"] == f"https://{HOST}/static/ui/par.css"


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="chromium and chromedriver are not installed (Debian: chromium chromium-driver)",
)
def test_the_page_is_styled_and_its_buttons_work_through_nginx(site):
    """A real browser at https://par.example.org (mapped to nginx): login, styles, the page's script."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = site.url.rsplit(":", 1)[1]
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", f"--host-resolver-rules=MAP {HOST} 127.0.0.1",
        "--ignore-certificate-errors",  # the test's own certificate, for 127.0.0.1
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        page = f"https://{HOST}:{port}/ui/"
        driver.get(page)
        waiting = WebDriverWait(driver, 30, poll_frequency=0.1)
        waiting.until(lambda d: "/ui/login" in d.current_url)
        assert driver.execute_script("return document.styleSheets[0].cssRules.length") > 0
        driver.find_element(By.NAME, "username").send_keys(USER)
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        waiting.until(lambda d: d.current_url == page and d.find_elements(By.ID, "query"))
        sheets = driver.execute_script("return [...document.styleSheets].map(s => s.cssRules.length)")
        assert sheets and all(n > 0 for n in sheets), sheets
        driver.find_element(By.CSS_SELECTOR, "button[data-last='15m']").click()
        # The script ran and asked the API: with no node granted, the API's refusal is shown.
        said = waiting.until(
            lambda d: " ".join(d.find_element(By.ID, i).text for i in ("message", "status")).strip()
        )
        assert "node" in said, said
    finally:
        driver.quit()
