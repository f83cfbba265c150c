"""The admin and the docs look right under gunicorn: their CSS and JavaScript are served (WhiteNoise)."""

from __future__ import annotations

import gzip
import re

import pytest
import requests

from tests.collector.live import live_database, manage
from tests.servers import gunicorn


def _asset(page: str, pattern: str) -> str:
    """The path of the first asset ``page`` links to whose URL matches ``pattern``."""
    match = re.search(rf'(?:href|src)="(/static/[^"]*{pattern}[^"]*)"', page)
    assert match, f"no asset matching {pattern!r} in:\n{page[:2000]}"
    return match.group(1)


def _fetch_pages_assets(url: str) -> dict[str, requests.Response]:
    login = requests.get(f"{url}/admin/login/", timeout=30)
    docs = requests.get(f"{url}/docs", timeout=30)
    assert login.status_code == 200 and docs.status_code == 200
    paths = {
        "admin css": _asset(login.text, r"admin/css/base[^\"]*\.css"),
        "docs js": _asset(docs.text, r"swagger-ui-bundle[^\"]*\.js"),
    }
    return {
        name: requests.get(f"{url}{path}", headers={"Accept-Encoding": "gzip"}, timeout=30, stream=True)
        for name, path in paths.items()
    }


@pytest.mark.slow
def test_a_fresh_install_serves_the_admin_css_and_the_docs_js(tmp_path):
    """Without collectstatic the files come from the apps' own folders, by their plain names."""
    with (
        live_database(tmp_path) as db,
        gunicorn("collector", {"PAR_DATA_DIR": str(tmp_path), "DATABASE_URL": db}) as server,
    ):
        assets = _fetch_pages_assets(server.url)
    css, js = assets["admin css"], assets["docs js"]
    assert css.url.endswith("/static/admin/css/base.css")
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    assert js.status_code == 200 and "javascript" in js.headers["Content-Type"]
    assert b"SwaggerUIBundle" in js.raw.read(decode_content=True)


@pytest.mark.slow
def test_after_collectstatic_the_files_are_compressed_and_cached_for_good(tmp_path):
    env = {"PAR_DATA_DIR": str(tmp_path)}
    manage(env, "collectstatic", "--noinput")
    with live_database(tmp_path) as db, gunicorn("collector", {**env, "DATABASE_URL": db}) as server:
        assets = _fetch_pages_assets(server.url)
        plain = requests.get(f"{server.url}/static/admin/css/base.css", timeout=30)
        missing = requests.get(f"{server.url}/static/admin/css/no-such.css", timeout=30)
    for name, answer in assets.items():
        assert answer.status_code == 200, name
        # A content hash in the name: the file can be cached for good.
        assert re.search(r"\.[0-9a-f]{12}\.(css|js)$", answer.url), answer.url
        assert "immutable" in answer.headers["Cache-Control"], name
        assert answer.headers.get("Content-Encoding") == "gzip", name
        assert len(gzip.decompress(answer.raw.read())) > int(answer.headers["Content-Length"])
    assert plain.status_code == 200 and b"body" in plain.content
    assert missing.status_code == 404 and missing.json() == {"error": "not found"}
