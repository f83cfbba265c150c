"""plugins/sysinfo: what it reads from /proc and /sys, on a made-up host and on this one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plugins.sysinfo import probe

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   20831     218    0    0    0     0          0         0    20831     218    0    0    0     0       0          0
  eth1: 9876543210 12345678  3  4567  8     9          0        10  1234     12    1    2    3     4       5          6
"""
MEMINFO = """\
MemTotal:       24731708 kB
MemFree:        22728308 kB
MemAvailable:   24317748 kB
Buffers:           88284 kB
Cached:          1681172 kB
SwapCached:            0 kB
SwapTotal:       1048572 kB
SwapFree:        1048000 kB
HugePages_Total:       0
"""
SOFTNET = """\
000000c8 00000002 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
00001218 0000000a 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001
"""


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, Path]:
    """A made-up /proc and /sys/class/net with a capture interface that drops packets."""
    proc, sys_net = tmp_path / "proc", tmp_path / "sys_net"
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "dev").write_text(NET_DEV)
    (proc / "net" / "softnet_stat").write_text(SOFTNET)
    (proc / "meminfo").write_text(MEMINFO)
    (proc / "uptime").write_text("692.35 1234.52\n")
    (proc / "loadavg").write_text("0.45 0.26 0.14 3/91 7996\n")
    (proc / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Test CPU @ 3.00GHz\n")
    eth1 = sys_net / "eth1"
    eth1.mkdir(parents=True)
    (eth1 / "operstate").write_text("up\n")
    (eth1 / "mtu").write_text("9000\n")
    (eth1 / "address").write_text("02:00:00:00:00:01\n")
    (eth1 / "speed").write_text("10000\n")
    return proc, sys_net


def test_interface_counters_come_from_proc_net_dev(host):
    proc, sys_net = host
    eth1 = probe.interfaces(proc, sys_net)["eth1"]
    assert eth1["rx"] == {
        "bytes": 9876543210,
        "packets": 12345678,
        "errors": 3,
        "drops": 4567,
        "fifo": 8,
        "frame": 9,
        "compressed": 0,
        "multicast": 10,
    }
    assert eth1["tx"] == {
        "bytes": 1234,
        "packets": 12,
        "errors": 1,
        "drops": 2,
        "fifo": 3,
        "collisions": 4,
        "carrier": 5,
        "compressed": 6,
    }
    assert (eth1["state"], eth1["mtu"], eth1["mac"], eth1["speed_mbps"]) == (
        "up",
        9000,
        "02:00:00:00:00:01",
        10000,
    )


def test_an_interface_without_sys_attributes_shows_nulls(host):
    proc, sys_net = host
    lo = probe.interfaces(proc, sys_net)["lo"]
    assert (lo["state"], lo["mtu"], lo["mac"], lo["speed_mbps"]) == (None, None, None, None)
    assert lo["rx"]["packets"] == 218


@pytest.mark.parametrize(
    ("patterns", "shown"),
    [(("*",), ["lo", "eth1"]), (("eth*",), ["eth1"]), (("lo", "eth1"), ["lo", "eth1"]), (("wlan*",), [])],
)
def test_the_interfaces_setting_picks_which_are_shown(host, patterns, shown):
    proc, sys_net = host
    assert list(probe.interfaces(proc, sys_net, patterns)) == shown


def test_memory_is_in_bytes(host):
    proc, _ = host
    assert probe.memory(proc) == {
        "total": 24731708 * 1024,
        "available": 24317748 * 1024,
        "free": 22728308 * 1024,
        "buffers": 88284 * 1024,
        "cached": 1681172 * 1024,
        "swap_total": 1048572 * 1024,
        "swap_free": 1048000 * 1024,
    }


def test_uptime_load_and_softnet(host):
    proc, _ = host
    assert probe.uptime(proc) == 692.35
    assert probe.load(proc) == {"1m": 0.45, "5m": 0.26, "15m": 0.14, "runnable": 3, "tasks": 91}
    # summed over CPUs, read as hexadecimal
    assert probe.softnet(proc) == {"processed": 0xC8 + 0x1218, "dropped": 2 + 10, "time_squeeze": 1}


def test_cpu_count_and_model(host):
    proc, _ = host
    cpu = probe.cpu_info(proc)
    assert cpu["count"] == os.cpu_count()
    assert cpu["model"] == "Test CPU @ 3.00GHz"
    assert 1 <= cpu["usable"] <= cpu["count"]


def test_a_host_without_proc_answers_nulls_not_an_error(tmp_path):
    answer = probe.snapshot(proc=tmp_path / "no-proc", sys_net=tmp_path / "no-sys")
    for section in ("memory", "uptime", "load", "softnet", "interfaces"):
        assert answer[section] is None
    assert answer["cpu"]["count"] == os.cpu_count()
    assert answer["os"]["system"]


def test_a_garbled_proc_file_is_a_null_section(host):
    proc, sys_net = host
    (proc / "net" / "dev").write_text(
        "Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n  eth0: 1\n"
    )
    assert probe.snapshot(proc=proc, sys_net=sys_net)["interfaces"] is None


@pytest.mark.skipif(not Path("/proc/net/dev").exists(), reason="needs Linux /proc")
def test_this_hosts_loopback_and_memory_are_seen():
    answer = probe.snapshot()
    assert "lo" in answer["interfaces"]
    assert answer["interfaces"]["lo"]["rx"]["packets"] >= 0
    assert answer["memory"]["total"] > 0
    assert answer["uptime"] > 0
    assert answer["kernel"]["release"] == os.uname().release
