"""The page's "paste an alert" box in a real headless chromium: a Suricata alert finds its flow and its packets."""

from __future__ import annotations

import json
import time

import pytest

from api.times import format_iso
from tests.collector.test_page_browser import (  # noqa: F401  (fixtures)
    CHROMEDRIVER,
    CHROMIUM,
    WANTED,
    browser,
    downloads,
    flow_rows,
    live,
    log_in,
    screenshot,
    wait,
)

selenium = pytest.importorskip("selenium", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="chromium and chromedriver are not installed (Debian: chromium chromium-driver)",
    ),
]


def suricata_alert(site) -> dict:
    records = site.traffic.flows[WANTED]
    return {
        "timestamp": format_iso(records[-1][0])[:-4] + "+0000",
        "event_type": "alert",
        "src_ip": WANTED.b,
        "src_port": WANTED.b_port,
        "dest_ip": WANTED.a,
        "dest_port": WANTED.a_port,
        "proto": "TCP",
        "alert": {"signature_id": 1, "signature": "pasted"},
        "flow": {"start": format_iso(records[0][0])[:-4] + "+0000"},
    }


def test_a_pasted_alert_lists_its_flow_and_downloads_its_packets(browser, live, downloads):  # noqa: F811
    log_in(browser, live)
    browser.find_element(By.CSS_SELECTOR, "#alert-box summary").click()
    box = browser.find_element(By.CSS_SELECTOR, "#alert-form textarea")
    box.send_keys(json.dumps(suricata_alert(live), indent=1))
    browser.find_element(By.CSS_SELECTOR, "#alert-form button[type=submit]").click()
    wait(browser, lambda d: [row[3:5] for row in flow_rows(d)] == [["192.0.2.10:40000", "198.51.100.20:443"]])
    asked = browser.find_element(By.ID, "alert-query").text
    assert asked.startswith("GET /flows?node_id=") and "src_addr=198.51.100.20" in asked
    assert browser.find_element(By.NAME, "src_addr").get_attribute("value") == "198.51.100.20"
    screenshot(browser, "alert")

    before = set(downloads.iterdir())
    browser.find_element(By.ID, "alert-download").click()
    deadline = time.monotonic() + 30
    while not [p for p in set(downloads.iterdir()) - before if not p.name.endswith(".crdownload")]:
        assert time.monotonic() < deadline, "no download"
        time.sleep(0.1)
    (saved,) = [p for p in set(downloads.iterdir()) - before if not p.name.endswith(".crdownload")]
    assert saved.read_bytes() == live.traffic.pcap_of(WANTED)


def test_a_record_naming_no_flow_shows_the_apis_message(browser, live):  # noqa: F811
    log_in(browser, live) if "/ui/" not in browser.current_url else None
    box = browser.find_element(By.CSS_SELECTOR, "#alert-form textarea")
    box.clear()
    box.send_keys('{"event_type": "alert", "timestamp": "2026-12-01T05:40:00Z"}')
    browser.find_element(By.CSS_SELECTOR, "#alert-form button[type=submit]").click()
    wait(browser, lambda d: "the record names no flow" in d.find_element(By.ID, "message").text)
