"""Read the host's state from /proc and /sys: no shelling out, no third-party library.

Each section is read on its own; one the host cannot give (no /proc outside
Linux, an unreadable file) is ``None`` rather than an error, so the answer is
always whatever can be known. Sizes are bytes, times seconds, counters are the
kernel's since boot.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import platform
import socket
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("plugins.sysinfo")
T = TypeVar("T")

PROC = Path("/proc")
SYS_NET = Path("/sys/class/net")

# /proc/net/dev column names -> ours.
_DEV_NAMES = {"errs": "errors", "drop": "drops", "colls": "collisions"}
_MEMINFO = {
    "MemTotal": "total",
    "MemAvailable": "available",
    "MemFree": "free",
    "Buffers": "buffers",
    "Cached": "cached",
    "SwapTotal": "swap_total",
    "SwapFree": "swap_free",
}


def snapshot(patterns: Iterable[str] = ("*",), proc: Path = PROC, sys_net: Path = SYS_NET) -> dict[str, Any]:
    """Everything GET /plugins/sysinfo/ answers."""
    return {
        "hostname": socket.gethostname(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "os": os_info(),
        "kernel": {"release": platform.release(), "version": platform.version()},
        "cpu": _section("cpu", cpu_info, proc),
        "memory": _section("memory", memory, proc),
        "uptime": _section("uptime", uptime, proc),
        "load": _section("load", load, proc),
        "softnet": _section("softnet", softnet, proc),
        "interfaces": _section("interfaces", interfaces, proc, sys_net, tuple(patterns)),
    }


def _section(name: str, reader: Callable[..., T], *args) -> T | None:
    try:
        return reader(*args)
    except (OSError, ValueError, IndexError) as exc:
        log.info("sysinfo: %s not available: %s", name, exc)
        return None


def os_info() -> dict[str, str | None]:
    try:
        distribution = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        distribution = None
    return {"system": platform.system(), "distribution": distribution, "machine": platform.machine()}


def cpu_info(proc: Path = PROC) -> dict[str, Any]:
    """CPUs of the host, those this process may use, and their model."""
    model = None
    try:
        for line in (proc / "cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Processor", "cpu model"):
                model = value.strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"count": os.cpu_count(), "usable": usable, "model": model}


def memory(proc: Path = PROC) -> dict[str, int | None]:
    """/proc/meminfo in bytes."""
    values: dict[str, int | None] = dict.fromkeys(_MEMINFO.values())
    for line in (proc / "meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in _MEMINFO:
            amount, *unit = rest.split()
            values[_MEMINFO[key]] = int(amount) * (1024 if unit == ["kB"] else 1)
    if values["total"] is None:
        raise ValueError("no MemTotal in meminfo")
    return values


def uptime(proc: Path = PROC) -> float:
    """Seconds since boot."""
    return float((proc / "uptime").read_text().split()[0])


def load(proc: Path = PROC) -> dict[str, Any]:
    """Load averages, and the runnable / total scheduling entities."""
    one, five, fifteen, tasks, *_ = (proc / "loadavg").read_text().split()
    runnable, _, total = tasks.partition("/")
    return {
        "1m": float(one),
        "5m": float(five),
        "15m": float(fifteen),
        "runnable": int(runnable),
        "tasks": int(total),
    }


def softnet(proc: Path = PROC) -> dict[str, int]:
    """Sums over CPUs of /proc/net/softnet_stat: packets the kernel took in, dropped for a full backlog, and
    times its budget ran out (``time_squeeze``)."""
    processed = dropped = squeezed = 0
    for line in (proc / "net" / "softnet_stat").read_text().splitlines():
        fields = line.split()
        processed += int(fields[0], 16)
        dropped += int(fields[1], 16)
        squeezed += int(fields[2], 16)
    return {"processed": processed, "dropped": dropped, "time_squeeze": squeezed}


def interfaces(
    proc: Path = PROC, sys_net: Path = SYS_NET, patterns: tuple[str, ...] = ("*",)
) -> dict[str, dict[str, Any]]:
    """Every interface of /proc/net/dev matching ``patterns``: state, MTU, MAC, speed and counters."""
    answer = {}
    for name, rx, tx in read_net_dev((proc / "net" / "dev").read_text()):
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            answer[name] = {**link_info(sys_net / name), "rx": rx, "tx": tx}
    return answer


def read_net_dev(text: str) -> list[tuple[str, dict[str, int], dict[str, int]]]:
    """``[(interface, rx counters, tx counters)]``, the column names taken from the file's own header."""
    lines = text.splitlines()
    _, rx_header, tx_header = lines[1].split("|")
    rx_names = [_DEV_NAMES.get(n, n) for n in rx_header.split()]
    tx_names = [_DEV_NAMES.get(n, n) for n in tx_header.split()]
    rows = []
    for line in lines[2:]:
        name, _, numbers = line.partition(":")
        values = [int(v) for v in numbers.split()]
        if len(values) != len(rx_names) + len(tx_names):
            raise ValueError(f"unexpected /proc/net/dev line for {name.strip()!r}")
        rx = dict(zip(rx_names, values[: len(rx_names)], strict=True))
        tx = dict(zip(tx_names, values[len(rx_names) :], strict=True))
        rows.append((name.strip(), rx, tx))
    return rows


def link_info(device: Path) -> dict[str, Any]:
    """State, MTU, MAC address and speed (Mb/s) from /sys/class/net/<name>; None where unknown."""

    def read(attr: str) -> str | None:
        try:
            return (device / attr).read_text().strip()
        except OSError:  # e.g. speed of a virtual or down interface: EINVAL
            return None

    mtu, speed = read("mtu"), read("speed")
    return {
        "state": read("operstate"),
        "mtu": int(mtu) if mtu and mtu.isdigit() else None,
        "mac": read("address"),
        "speed_mbps": int(speed) if speed and speed.isdigit() else None,
    }
