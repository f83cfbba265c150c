"""The web page in a real headless chromium against a real collector and node under gunicorn.

An analyst logs in with a Django account, asks for the last 15 minutes, sees the flows, sorts
them, downloads one flow, a selection and everything matched, and gets the API's message for a
bad parameter. Screenshots are written to ``PAR_SCREENSHOTS_DIR`` when it is set
(``make screenshots`` writes docs/ui-*.png, shown in docs/web.md).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from pcapgen import Flow, pcap_bytes, write_pcap
from tests.collector.live import live_database, manage, rows
from tests.collector.test_exports_live import worker as export_worker
from tests.servers import Server, gunicorn

selenium = pytest.importorskip("selenium", reason="selenium is not installed")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="chromium and chromedriver are not installed (Debian: chromium chromium-driver)",
    ),
]

USER, PASSWORD = "analyst", "a long and careful passphrase"
WANTED = Flow(6, "192.0.2.10", 40000, "198.51.100.20", 443)
OTHERS = [
    Flow(6, "10.1.2.3", 51000, "192.0.2.80", 80),
    Flow(17, "10.1.2.4", 53000, "192.0.2.53", 53),
    Flow(6, "fd00::5", 52000, "2001:db8::443", 443),
    Flow(17, "10.9.8.7", 5060, "198.51.100.60", 5060),
    Flow(6, "10.1.2.5", 55000, "192.0.2.25", 25),
]


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9:09d}Z"


@dataclass
class Traffic:
    records: list[tuple[int, bytes]]
    flows: dict[Flow, list[tuple[int, bytes]]]  # each flow's records, in time order

    def pcap_of(self, *flows: Flow) -> bytes:
        return pcap_bytes(sorted(r for f in flows for r in self.flows[f]))


def make_traffic(start: int) -> Traffic:
    """Bursts of a few flows over ten minutes ending now, the wanted one among them."""
    flows: dict[Flow, list[tuple[int, bytes]]] = {}
    for n, flow in enumerate([WANTED, *OTHERS]):
        burst_at = start + 60 + n * 80  # seconds: one burst after another, so the timeline has a shape
        records = []
        for i in range(40 + 30 * n):
            ts = burst_at * 10**9 + i * 250_000_000 + n * 1000
            payload = bytes([i % 256]) * ((i * 37 + n * 101) % 1200)
            records.append((ts, flow.frame(forward=i % 3 != 2, payload=payload, seq=i)))  # a sends first
        flows[flow] = records
    return Traffic(sorted(r for rs in flows.values() for r in rs), flows)


def flows_answer(traffic: Traffic, start_ns: int, end_ns: int) -> dict:
    """What GET /flows answers for this traffic (the page's stand-in until the route is served)."""
    listed = []
    for flow, records in traffic.flows.items():
        listed.append(
            {
                "node": "1", "proto": flow.proto, "src_addr": flow.a, "src_port": flow.a_port,
                "dst_addr": flow.b, "dst_port": flow.b_port, "community_id": None,
                "first": iso(records[0][0]), "last": iso(records[-1][0]),
                "packets": len(records), "bytes": sum(len(frame) for _, frame in records),
            }
        )  # fmt: skip
    listed.sort(key=lambda row: row["first"])
    return {
        "window": {"start": iso(start_ns), "end": iso(end_ns)},
        "flows": listed,
        "truncated": False,
        "failed": {},
    }


@dataclass
class Live:
    collector: Server
    node: Server
    database_url: str
    traffic: Traffic


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[Live]:
    base = tmp_path_factory.mktemp("page")
    start = int(time.time()) - 600
    traffic = make_traffic(start)
    capture, filed = base / "node" / "capture", base / "node" / "filed"
    capture.mkdir(parents=True)
    filed.mkdir(parents=True)
    write_pcap(capture / f"pcap.{start}", traffic.records)
    node_env = {
        "PAR_DATA_DIR": str(base / "node"),
        "PAR_CAPTURE_DIR": str(capture),
        "PAR_FILER_DIR": str(filed),
    }
    with gunicorn("node", node_env) as node:
        (base / "nodes.conf").write_text(json.dumps({"1": node.url.removeprefix("http://")}))
        with live_database(base) as url:
            env = {"DATABASE_URL": url, "PAR_DATA_DIR": str(base), "DJANGO_SECURE_COOKIES": "false"}
            manage(env, "importconfig", "--node-file", str(base / "nodes.conf"))
            manage(
                env, "shell", "-c",
                "from django.contrib.auth.models import User; from collector.models import UserGrant;"
                f"u = User.objects.create_user({USER!r}, password={PASSWORD!r});"
                "UserGrant.objects.create(user=u).nodes.set([1])",
            )  # fmt: skip
            with gunicorn("collector", env) as collector, export_worker(env):
                yield Live(collector, node, url, traffic)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
        "--window-size=1440,1000", "--force-device-scale-factor=1", "--lang=en-US",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, timeout: float = 30):
    """What ``condition`` returns once it is true; on a timeout, what the page said and logged."""
    try:
        # The page redraws its table as answers arrive: a row read while it is replaced is read again.
        waiting = WebDriverWait(
            driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
        )
        return waiting.until(lambda d: condition(d))
    except TimeoutException:
        said = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#message, #status, #download-status")]
        console = [entry["message"] for entry in driver.get_log("browser")]
        raise AssertionError(f"at {driver.current_url}: page says {said}, console {console}") from None


def screenshot(driver, name: str) -> None:
    target = os.environ.get("PAR_SCREENSHOTS_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(target) / f"ui-{name}.png"))


def downloaded(directory: Path, name: str, timeout: float = 30) -> bytes:
    """The bytes of a finished download (Chromium writes .crdownload until it is complete)."""
    path = directory / name
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no {name} in {sorted(p.name for p in directory.iterdir())}"
        time.sleep(0.1)
    return path.read_bytes()


def serve_flows_if_missing(driver, live: Live) -> None:
    """Until the collector answers GET /flows for any selection, the page's fetch of it is answered here."""
    probe = api_session(driver).get(
        f"{live.collector.url}/flows", params={"start_time": "-15m", "node_id": "1"}, timeout=30
    )
    if probe.status_code == 200 or "missing parameter" not in probe.text and probe.status_code != 404:
        return
    records = live.traffic.records
    answer = flows_answer(live.traffic, records[0][0] - 10**9, records[-1][0] + 10**9)
    driver.execute_script(
        "const answer = arguments[0]; const real = window.fetch;"
        "window.fetch = (url, init) => String(url).startsWith('/flows?')"
        " ? Promise.resolve(new Response(JSON.stringify(answer), {headers: {'Content-Type': 'application/json'}}))"
        " : real(url, init);",
        answer,
    )


def log_in(driver, live: Live) -> None:
    driver.get(f"{live.collector.url}/ui/")
    wait(driver, lambda d: "/ui/login" in d.current_url)
    screenshot(driver, "login")
    driver.find_element(By.NAME, "username").send_keys(USER)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver, lambda d: d.current_url.endswith("/ui/") and d.find_elements(By.ID, "query"))


def flow_rows(driver) -> list[list[str]]:
    return [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in driver.find_elements(By.CSS_SELECTOR, "#flows tbody tr")
    ]


def pcap_record_times(data: bytes) -> list[int]:
    times, at = [], 24
    while at < len(data):
        sec, usec, length, _ = struct.unpack_from("<IIII", data, at)
        times.append(sec * 10**6 + usec)
        at += 16 + length
    return times


def test_an_analyst_logs_in_asks_the_last_15_minutes_and_downloads_a_flow(browser, live, downloads):
    log_in(browser, live)
    serve_flows_if_missing(browser, live)
    browser.find_element(By.CSS_SELECTOR, "button[data-last='15m']").click()
    wait(browser, lambda d: len(flow_rows(d)) == 6)
    assert browser.find_element(By.NAME, "start_time").get_attribute("value") == "-15m"
    wanted = next(row for row in flow_rows(browser) if "192.0.2.10:40000" in row)
    assert wanted[1:5] == ["1", "tcp", "192.0.2.10:40000", "198.51.100.20:443"]
    assert wanted[7] == str(len(live.traffic.flows[WANTED]))
    assert browser.find_elements(By.CSS_SELECTOR, "#timeline rect.bar"), "the timeline has bars"
    assert "par pcap" in browser.find_element(By.ID, "cli").text
    screenshot(browser, "flows")

    row = next(
        r for r in browser.find_elements(By.CSS_SELECTOR, "#flows tbody tr") if "192.0.2.10:40000" in r.text
    )
    row.find_element(By.CSS_SELECTOR, "button.one").click()
    wait(browser, lambda d: "Saved" in d.find_element(By.ID, "download-status").text)
    name = browser.find_element(By.ID, "download-status").text.split()[1]
    body = downloaded(downloads, name)
    assert body[24:] == live.traffic.pcap_of(WANTED)[24:]  # every packet of the flow, byte for byte

    logged = rows(
        live.database_url,
        "SELECT u.username, l.status, l.bytes_sent FROM collector_requestlog l "
        "JOIN auth_user u ON u.id = l.user_id WHERE l.view = 'data.pcap' ORDER BY l.id DESC LIMIT 1",
    )
    assert logged == [(USER, 200, len(body))]


def test_columns_sort_and_a_selection_downloads_as_one_pcap_in_time_order(browser, live, downloads):
    bytes_header = browser.find_element(By.CSS_SELECTOR, "#flows th[data-key=bytes] button")
    bytes_header.click()
    column = [int(row[8].replace(",", "")) for row in flow_rows(browser)]
    assert column == sorted(column, reverse=True)
    assert (
        browser.find_element(By.CSS_SELECTOR, "#flows th[data-key=bytes]").get_attribute("aria-sort")
        == "descending"
    )
    bytes_header.click()
    column = [int(row[8].replace(",", "")) for row in flow_rows(browser)]
    assert column == sorted(column)

    for row in browser.find_elements(By.CSS_SELECTOR, "#flows tbody tr"):
        if "192.0.2.10:40000" in row.text or "10.1.2.3:51000" in row.text:
            row.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    button = browser.find_element(By.ID, "download-selection")
    assert button.text == "Download selection (2)"
    button.click()
    wait(browser, lambda d: "Saved selection-2-flows.pcap" in d.find_element(By.ID, "download-status").text)
    body = downloaded(downloads, "selection-2-flows.pcap")
    assert body[24:] == live.traffic.pcap_of(WANTED, OTHERS[0])[24:]
    assert pcap_record_times(body) == sorted(pcap_record_times(body))


def skip_unless_the_collector_takes_any_selection(browser, live: Live) -> None:
    """Everything matched is asked with the form's selectors, which need not be a whole flow."""
    answer = api_session(browser).get(
        f"{live.collector.url}/data.pcap", params={"start_time": "-1m", "node_id": "1"}, timeout=30
    )
    if answer.status_code == 400 and "missing parameter" in answer.text:
        pytest.skip("this collector still asks for a whole flow: " + answer.json()["error"])


def test_everything_matched_downloads_the_whole_query(browser, live, downloads):
    skip_unless_the_collector_takes_any_selection(browser, live)
    node = browser.find_element(By.NAME, "node_id")
    node.clear()
    node.send_keys("1")
    browser.find_element(By.CSS_SELECTOR, "#query button[type=submit]").click()
    wait(browser, lambda d: "node_id=1" in d.current_url and len(flow_rows(d)) == 6)
    browser.find_element(By.CSS_SELECTOR, "input[name=format][value=pcapng]").click()
    browser.find_element(By.ID, "download-all").click()
    # It runs as an export job: listed with its progress, then a link to its file.
    wait(browser, lambda d: "Export " in d.find_element(By.ID, "download-status").text)
    link = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#export-jobs tr[data-state=done] a"))[0]
    job_id = link.get_attribute("href").rsplit("/", 2)[1]
    assert (
        browser.find_element(By.CSS_SELECTOR, f"#export-jobs tr[data-id='{job_id}'] progress").get_attribute(
            "value"
        )
        == "1"
    )
    screenshot(browser, "exports")
    link.click()
    body = downloaded(downloads, f"export-{job_id}.pcapng")
    assert body[:4] == b"\x0a\x0d\x0d\x0a"  # a pcapng section
    frames = {frame for _, frame in live.traffic.records}
    assert sum(body.count(frame) for frame in list(frames)[:20]) >= 20  # the packets are in it


def api_session(browser) -> requests.Session:
    """The browser's session, for asking the API what it answers this user."""
    session = requests.Session()
    for cookie in browser.get_cookies():
        session.cookies.set(cookie["name"], cookie["value"])
    return session


def test_a_bad_parameter_shows_the_apis_message(browser, live):
    browser.get(f"{live.collector.url}/ui/")  # the collector's own answers, no stand-in
    params = {"src_addr": WANTED.a, "src_port": str(WANTED.a_port), "dst_addr": WANTED.b, "dst_port": "99999"}
    params |= {"start_time": "-15m", "end_time": "now"}
    for name, value in params.items():
        field = browser.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "#query button[type=submit]").click()
    message = wait(
        browser,
        lambda d: d.find_element(By.ID, "message").is_displayed() and d.find_element(By.ID, "message"),
    )
    said = api_session(browser).get(
        f"{live.collector.url}/flows", params={**params, "node_id": "all"}, timeout=30
    )
    assert said.status_code == 400
    assert message.text == said.json()["error"]  # the API's words, as it says them
    assert message.text.startswith("invalid dst_port")
    screenshot(browser, "error")


def test_the_page_works_from_the_keyboard(browser, live):
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{live.collector.url}/ui/")
    serve_flows_if_missing(browser, live)
    body = browser.find_element(By.TAG_NAME, "body")
    body.click()
    body.send_keys("/")
    assert browser.switch_to.active_element.get_attribute("name") == "src_addr"
    browser.switch_to.active_element.send_keys("192.0.2.10")
    start = browser.find_element(By.NAME, "start_time")
    start.clear()
    start.send_keys("-1h", Keys.ENTER)  # Enter in any field asks
    wait(browser, lambda d: len(flow_rows(d)) >= 1)


def ask(browser, **fields: str) -> None:
    """Fill the form's ``fields`` (others emptied but node_id) and ask."""
    for name in ("src_addr", "src_port", "dst_addr", "dst_port", "proto", "community_id", "limit"):
        browser.find_element(By.NAME, name).clear()
    for name, value in fields.items():
        field = browser.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "#query button[type=submit]").click()


def test_the_field_an_error_names_is_marked(browser, live):
    browser.get(f"{live.collector.url}/ui/")
    ask(browser, dst_port="99999", start_time="-15m", end_time="now")
    wait(browser, lambda d: d.find_element(By.ID, "message").is_displayed())
    assert browser.find_element(By.NAME, "dst_port").get_attribute("aria-invalid") == "true"
    assert browser.find_element(By.NAME, "src_port").get_attribute("aria-invalid") is None
    ask(browser, start_time="-15m", end_time="now")
    wait(browser, lambda d: len(flow_rows(d)) == 6)
    assert browser.find_element(By.NAME, "dst_port").get_attribute("aria-invalid") is None


def test_the_page_shows_what_the_nodes_hold_and_offers_it_on_a_miss(browser, live):
    browser.get(f"{live.collector.url}/ui/")
    held = wait(browser, lambda d: d.find_element(By.ID, "holdings").text)
    assert held.startswith("Captures held: node 1: ")
    ask(browser, start_time="2001-01-01 5:01pm", end_time="2001-01-01 5:05pm")
    message = wait(
        browser,
        lambda d: d.find_element(By.ID, "message").is_displayed() and d.find_element(By.ID, "message"),
    )
    assert message.text.startswith("no capture data for that timeframe The nodes hold captures from ")
    browser.find_element(By.ID, "use-holdings").click()
    wait(browser, lambda d: len(flow_rows(d)) == 6)
    assert not browser.find_element(By.ID, "message").is_displayed()


def timeline_bars(browser) -> list[tuple[str, str]]:
    return [
        (bar.get_attribute("data-bin"), bar.get_attribute("height"))
        for bar in browser.find_elements(By.CSS_SELECTOR, "#timeline rect.bar:not(.picked)")
    ]


def test_the_timeline_shows_everything_matched_not_only_the_flows_listed(browser, live):
    browser.get(f"{live.collector.url}/ui/")
    records = live.traffic.records
    window = {"start_time": iso(records[0][0] - 60 * 10**9), "end_time": iso(records[-1][0] + 60 * 10**9)}
    ask(browser, **window)
    wait(browser, lambda d: len(flow_rows(d)) == 6)
    everything = timeline_bars(browser)
    ask(browser, **window, limit="2")
    wait(browser, lambda d: len(flow_rows(d)) == 2)
    # The nodes' bytes over time of all six flows: the same bars, the rows cut at 2.
    assert timeline_bars(browser) == everything
    assert not browser.find_element(By.ID, "timeline-partial").is_displayed()
    total = sum(len(frame) for _, frame in live.traffic.records)
    status = browser.find_element(By.ID, "status").text
    assert "More flows matched than listed" in status and "matched in all (the timeline)" in status, (
        status,
        total,
    )


def test_a_zoom_keeps_the_form_in_view(browser, live):
    browser.get(f"{live.collector.url}/ui/")
    ask(browser, start_time="-15m", end_time="now")
    wait(browser, lambda d: len(flow_rows(d)) == 6)
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    browser.find_element(By.CSS_SELECTOR, "#timeline rect.bar").click()
    wait(browser, lambda d: "Z" in d.find_element(By.NAME, "start_time").get_attribute("value"))
    top = browser.execute_script("return document.getElementById('query').getBoundingClientRect().top")
    assert 0 <= top < browser.execute_script("return window.innerHeight")
