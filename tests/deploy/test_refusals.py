"""A node as deploy/node.env.example sets it up (loopback, behind its nginx), called from the sensor
itself: each 403 says why, and the documented local call (through nginx) works.

Real processes: the node under gunicorn, nginx running deploy/nginx-par-node.conf.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from tests.deploy.nginxrun import certificate, shipped_nginx
from tests.deploy.test_nginx import NGINX
from tests.deploy.test_samples import sample_env
from tests.servers import free_port, gunicorn

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx-light)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed for the test certificate"),
]

SECRET = "the-node-secret-of-this-test"
REFUSED = "this node does not answer this caller"
HOST = "sensor1.example.org"  # in the sample's DJANGO_ALLOWED_HOSTS


@dataclass
class Sensor:
    direct: str  # http://127.0.0.1:<port>: the node's own loopback port
    tls: str  # https://127.0.0.1:<port>: nginx in front of it
    cert: str

    def through_nginx(self, path: str, **headers: str) -> requests.Response:
        return requests.get(
            f"{self.tls}{path}", headers={"Host": HOST, **headers}, verify=self.cert, timeout=30
        )

    def straight(self, path: str, **headers: str) -> requests.Response:
        return requests.get(f"{self.direct}{path}", headers=headers, allow_redirects=False, timeout=30)


@pytest.fixture(scope="module")
def sensor(tmp_path_factory) -> Iterator[Sensor]:
    where = tmp_path_factory.mktemp("sensor")
    env = {
        k: v for k, v in sample_env("node.env.example").items() if "change-me" not in v and k != "PAR_BIND"
    }
    for name in ("PAR_DATA_DIR", "PAR_CAPTURE_DIR", "PAR_FILER_DIR"):
        (where / name).mkdir()
        env[name] = str(where / name)
    env |= {"PAR_NODE_SECRET": SECRET, "DJANGO_SECRET_KEY": "s" * 50}
    # docs/troubleshooting.md: to call the node from the sensor itself, allow the sensor's loopback.
    env["PAR_NODE_ALLOW"] += ",127.0.0.1/32"
    cert, key = certificate(where)
    with gunicorn("node", env) as node:
        upstream = int(node.url.rsplit(":", 1)[1])
        port = free_port()
        with shipped_nginx(
            "nginx-par-node.conf", where, cert, key, listen={"9443": port}, upstream=upstream, tls="9443"
        ):
            yield Sensor(node.url, f"https://127.0.0.1:{port}", str(cert))


def test_a_direct_call_on_the_loopback_port_says_the_proxy_forwarded_for_nobody(sensor):
    answer = sensor.straight("/ping")
    assert answer.status_code == 403
    assert answer.json() == {
        "error": f"{REFUSED}: caller unknown: trusted proxy 127.0.0.1 sent no X-Forwarded-For"
    }


def test_a_direct_scrape_says_the_same_not_that_loopback_is_not_allowed(sensor):
    answer = sensor.straight("/metrics")
    assert answer.status_code == 403
    assert answer.json()["error"].endswith("caller unknown: trusted proxy 127.0.0.1 sent no X-Forwarded-For")
    assert "is not allowed" not in answer.json()["error"]


def test_an_address_outside_the_allow_list_is_told_its_own_address(sensor):
    answer = sensor.straight("/ping", **{"X-Forwarded-For": "192.0.2.7"})
    assert answer.json() == {"error": f"{REFUSED}: address 192.0.2.7 is not allowed"}
    scrape = sensor.straight("/metrics", **{"X-Forwarded-For": "192.0.2.7"})
    assert scrape.status_code == 403 and scrape.json()["error"].endswith("address 192.0.2.7 is not allowed")


def test_through_nginx_without_the_secret_the_answer_names_the_header(sensor):
    answer = sensor.through_nginx("/ping")
    assert answer.status_code == 403
    assert answer.json() == {"error": f"{REFUSED}: missing node secret (X-PAR-Node-Secret)"}
    wrong = sensor.through_nginx("/ping", **{"X-PAR-Node-Secret": "not-it"})
    assert wrong.json() == {"error": f"{REFUSED}: wrong node secret (X-PAR-Node-Secret)"}
    assert SECRET not in answer.text + wrong.text


def test_the_documented_local_calls_work_through_nginx(sensor):
    ping = sensor.through_nginx("/ping", **{"X-PAR-Node-Secret": SECRET})
    assert ping.status_code == 200 and ping.json()["role"] == "node"
    scrape = sensor.through_nginx("/metrics")
    assert scrape.status_code == 200 and "par_capture_process_seen" in scrape.text
