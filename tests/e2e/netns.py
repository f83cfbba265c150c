"""Two test hosts joined by a veth link, each in a network namespace of its own.

Addresses come from the benchmarking ranges (198.18.0.0/15, and a ULA prefix
for IPv6); the namespaces exist only for the test and carry only its traffic.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

A4, B4 = "198.18.0.1", "198.18.0.2"
A6, B6 = "fd00:5eed::1", "fd00:5eed::2"


@dataclass
class Link:
    ns_a: str
    ns_b: str
    dev_a: str
    dev_b: str

    def run(self, ns: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, **kwargs)

    def popen(self, ns: str, argv: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kwargs)

    def python(self, ns: str, code: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(ns, [sys.executable, "-c", textwrap.dedent(code)], **kwargs)


def why_not_available() -> str | None:
    """None when namespaces can be made here, else the reason."""
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"parprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"network namespaces are not permitted here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@contextmanager
def veth_pair() -> Iterator[Link]:
    tag = f"{os.getpid() % 100000}"
    link = Link(ns_a=f"para{tag}", ns_b=f"parb{tag}", dev_a=f"pva{tag}", dev_b=f"pvb{tag}")
    steps = [
        ["ip", "netns", "add", link.ns_a],
        ["ip", "netns", "add", link.ns_b],
        [
            "ip",
            "link",
            "add",
            link.dev_a,
            "netns",
            link.ns_a,
            "type",
            "veth",
            "peer",
            "name",
            link.dev_b,
            "netns",
            link.ns_b,
        ],
        ["ip", "-n", link.ns_a, "addr", "add", f"{A4}/24", "dev", link.dev_a],
        ["ip", "-n", link.ns_b, "addr", "add", f"{B4}/24", "dev", link.dev_b],
        ["ip", "-n", link.ns_a, "-6", "addr", "add", f"{A6}/64", "dev", link.dev_a, "nodad"],
        ["ip", "-n", link.ns_b, "-6", "addr", "add", f"{B6}/64", "dev", link.dev_b, "nodad"],
        ["ip", "-n", link.ns_a, "link", "set", link.dev_a, "up"],
        ["ip", "-n", link.ns_b, "link", "set", link.dev_b, "up"],
        ["ip", "-n", link.ns_a, "link", "set", "lo", "up"],
        ["ip", "-n", link.ns_b, "link", "set", "lo", "up"],
    ]
    try:
        for argv in steps:
            subprocess.run(argv, check=True, capture_output=True)
        yield link
    finally:
        for ns in (link.ns_a, link.ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
