"""Alert record to the first packet in tshark, over HTTP on loopback, against a plain ``par pcap`` of the flow.

    .venv/bin/python bench/alert_to_tshark.py              # 10 rounds of each, 5 one-minute files
    .venv/bin/python bench/alert_to_tshark.py --rounds 3

Writes ``--files`` one-minute captures of background traffic (``pcapgen.mixed_traffic``) with one
TCP flow of ``--packets`` packets spread over them, indexes them, starts a node and a collector
under the shipped gunicorn.conf.py, writes par's config (mode 600) into a HOME of its own and
installs the extcap there. Then, alternately, each round:

- ``par pcap <the flow's selectors> -o FILE``: the plain download, to its end (the baseline);
- ``par pcap --event alert.json -o - | tshark -r - -l -c 1``: the alert record (a Suricata EVE
  alert of the flow) to the first packet tshark prints;
- ``tshark -i par-1 -o extcap.par_1.communityid:... -c 1 -l``: the same flow through the extcap.

For scale, also a do-nothing extcap's first packet (tshark's own cost of any extcap capture), ``par pcap <selectors> -o - | tshark -r - -l -c 1`` and tshark alone reading the
plain download's file (``tshark -r FILE -c 1``: tshark's own start). Each is timed from its start to the first line tshark prints (the plain download: to its exit).
The goal (issue 30): the alert's time at most 2x the plain ``par pcap``. Prints medians and the
load average before and after: on a shared machine the figures mean little unless it is low.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from ipaddress import ip_address
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import collector_env, load_average, server, set_up_collector  # noqa: E402

import pcapgen as g  # noqa: E402
from api.times import format_iso  # noqa: E402
from engine.dissection.communityid import community_id  # noqa: E402
from engine.index import build_index  # noqa: E402

T0 = 1_700_000_000
KEY = "0f6c7e4e-7a53-4b6e-9d0a-5b2e8c1d3f47"
FLOW = g.Flow(6, "10.77.0.3", 40443, "10.77.0.4", 443)
CID = community_id(ip_address(FLOW.a).packed, FLOW.a_port, ip_address(FLOW.b).packed, FLOW.b_port, 6)


# An extcap that answers at once, in the par extcap's own language: tshark's own cost of a capture
# through any extcap (it asks every extcap for its interfaces, and starts dumpcap), the floor.
FLOOR_EXTCAP = f"""#!{sys.executable}
import struct, sys
args = sys.argv[1:]
if "--extcap-interfaces" in args:
    print("extcap {{version=1.0}}")
    print("interface {{value=floor-1}}{{display=a do-nothing extcap}}")
elif "--extcap-dlts" in args:
    print("dlt {{number=1}}{{name=EN10MB}}{{display=Ethernet}}")
elif "--capture" in args:
    with open(args[args.index("--fifo") + 1], "wb") as out:
        frame = bytes(12) + b"\\x08\\x00" + b"\\x45" + bytes(19)
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        out.write(struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame)
"""


def write_captures(directory: Path, files: int, packets: int) -> tuple[int, int]:
    """The captures; the flow's first and last packet times (ns)."""
    directory.mkdir(parents=True)
    per_file = packets // files
    times = []
    for i in range(files):
        start = (T0 + 60 * i) * 10**9
        records = list(g.mixed_traffic(start, 60, 2000, pps=2000, seed=i))
        step = 60 * 10**9 // (per_file + 1)
        for n in range(per_file):
            ts = start + (n + 1) * step + 17
            records.append((ts, g.ether(FLOW.packet(forward=n % 2 == 0, payload=b"x" * 700, seq=n))))
            times.append(ts)
        records.sort(key=lambda r: r[0])
        path = directory / f"pcap.{T0 + 60 * i}"
        g.write_pcap(path, records)
        build_index(path)
    return times[0], times[-1]


def timed(command: list[str] | str, env: dict[str, str], *, shell: bool = False, first_line: bool) -> float:
    """Seconds from the start to the first line on stdout (``first_line``) or to the exit."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, shell=shell, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    if first_line:
        line = process.stdout.readline()
        elapsed = time.perf_counter() - started
        assert line, process.stderr.read().decode() if process.stderr else "no output"
    process.wait(timeout=120)
    if not first_line:
        elapsed = time.perf_counter() - started
        assert process.returncode == 0, process.stderr.read().decode() if process.stderr else ""
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--packets", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("tshark") is None:
        sys.exit("tshark is not installed")
    work = Path(tempfile.mkdtemp(prefix="par-alert-bench-"))
    first, last = write_captures(work / "capture", args.files, args.packets)
    (work / "filed").mkdir()
    node_env = {
        "PAR_DATA_DIR": str(work / "node"),
        "PAR_CAPTURE_DIR": str(work / "capture"),
        "PAR_FILER_DIR": str(work / "filed"),
    }
    (work / "node").mkdir()
    with ExitStack() as stack:
        node = stack.enter_context(server("node", node_env, work / "node.log"))
        env = collector_env(work / "collector")
        set_up_collector(env, [node], KEY)
        collector = stack.enter_context(server("collector", env, work / "collector.log"))
        home = work / "home"
        (home / ".config" / "par").mkdir(parents=True)
        config = home / ".config" / "par" / "config"
        config.write_text(f"url = {collector}\napi_key = {KEY}\nnode_id = 1\n")
        config.chmod(0o600)
        run_env = {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(ROOT / "client")}
        par = [sys.executable, "-m", "par_client"]
        subprocess.run([*par, "extcap", "install"], env=run_env, check=True, capture_output=True)
        alert = {
            "timestamp": format_iso(last)[:-4] + "+0000",
            "event_type": "alert",
            "src_ip": FLOW.a, "src_port": FLOW.a_port, "dest_ip": FLOW.b, "dest_port": FLOW.b_port,
            "proto": "TCP", "community_id": CID,
            "alert": {"signature_id": 1, "signature": "bench"},
            "flow": {"start": format_iso(first)[:-4] + "+0000"},
        }  # fmt: skip
        (work / "alert.json").write_text(json.dumps(alert))
        floor = home / ".config" / "wireshark" / "extcap" / "floor"
        floor.write_text(FLOOR_EXTCAP)
        floor.chmod(0o700)
        window = [f"start_time={format_iso(first - 10**9)}", f"end_time={format_iso(last + 300 * 10**9)}"]
        selectors = [
            f"src_addr={FLOW.a}",
            f"src_port={FLOW.a_port}",
            f"dst_addr={FLOW.b}",
            f"dst_port={FLOW.b_port}",
        ]
        plain = [*par, "pcap", *selectors, "proto=tcp", *window, "-q", "-o", str(work / "plain.pcap")]
        piped = (
            f"{' '.join(par)} pcap --event {work / 'alert.json'} -q -o - | tshark -r - -l -c 1 2>/dev/null"
        )
        prefs = {
            "communityid": CID,
            "starttime": window[0].split("=", 1)[1],
            "endtime": window[1].split("=", 1)[1],
        }
        floor_capture = ["tshark", "-i", "floor-1", "-l", "-c", "1"]
        extcap = ["tshark", "-i", "par-1", "-l", "-c", "1"]
        extcap += [arg for name, value in prefs.items() for arg in ("-o", f"extcap.par_1.{name}:{value}")]
        print(f"load average before: {load_average()}")
        plain_piped = f"{' '.join(plain[:-2])} -o - | tshark -r - -l -c 1 2>/dev/null"
        tshark_alone = ["tshark", "-r", str(work / "plain.pcap"), "-l", "-c", "1"]
        results: dict[str, list[float]] = {
            "plain par pcap": [],
            "alert | tshark": [],
            "tshark extcap": [],
            "par pcap | tshark": [],
            "tshark -r file": [],
            "do-nothing extcap": [],
        }
        for _ in range(args.rounds):
            results["plain par pcap"].append(timed(plain, run_env, first_line=False))
            results["par pcap | tshark"].append(timed(plain_piped, run_env, shell=True, first_line=True))
            results["tshark -r file"].append(timed(tshark_alone, run_env, first_line=True))
            results["do-nothing extcap"].append(timed(floor_capture, run_env, first_line=True))
            results["alert | tshark"].append(timed(piped, run_env, shell=True, first_line=True))
            results["tshark extcap"].append(timed(extcap, run_env, first_line=True))
        print(f"load average after:  {load_average()}")
        size = (work / "plain.pcap").stat().st_size
        print(
            f"the flow: {args.packets // args.files * args.files} packets, {size} bytes in {args.files} files"
        )
        base = statistics.median(results["plain par pcap"])
        for name, values in results.items():
            median = statistics.median(values)
            print(
                f"{name:16} median {median * 1000:7.1f} ms  min {min(values) * 1000:7.1f} ms  {median / base:.2f}x"
            )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
