"""Node addresses: the seed's forms, normalized to host:port."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from collector.models import normalize_address


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("120.18.0.151", "120.18.0.151:9002"),
        ("120.18.0.152:9000", "120.18.0.152:9000"),
        ("Sensor-1.Example.org", "sensor-1.example.org:9002"),
        ("sensor:80", "sensor:80"),
        ("::1", "[::1]:9002"),
        ("[2001:db8::1]:9000", "[2001:db8::1]:9000"),
        ("[2001:0db8::0001]", "[2001:db8::1]:9002"),
    ],
)
def test_an_address_is_stored_as_host_and_port(given, stored):
    assert normalize_address(given) == stored


@pytest.mark.parametrize(
    "given", ["10.0.0.1:0", "10.0.0.1:99999", "host:port", "bad host", "[::1", "[::1]x", "", "a/b"]
)
def test_a_bad_address_is_refused(given):
    with pytest.raises(ValidationError):
        normalize_address(given)
