"""What checking a node's /flows rows costs the collector (issue 26, point 7), before and after, back to back.

    .venv/bin/python bench/flowrows.py               # 100,000 rows, each way five times
    .venv/bin/python bench/flowrows.py --rows 34336

Builds one node's answer of ``--rows`` rows as a node writes it, then times (CPU of this process,
the cheapest of five runs) what the collector does with it: parse it (orjson), merge and sort it,
write the answer (orjson), without the rows' check and with it (``collector.flows.valid_rows``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "parsite.settings")
os.environ.setdefault("PAR_ROLE", "collector")

import django  # noqa: E402

django.setup()

import orjson  # noqa: E402

from collector.flows import NodeFlows, merge_flows, valid_rows, valid_window  # noqa: E402
from collector.models import Node  # noqa: E402


def node_answer(rows: int) -> bytes:
    flows = [
        {
            "proto": 6 if i % 3 else 17,
            "src_addr": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            "src_port": 1024 + i % 60000,
            "dst_addr": "2001:db8::1" if i % 5 == 0 else "192.0.2.80",
            "dst_port": 443,
            "community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            "first": f"2023-11-14T22:13:{i % 60:02d}.{i % 10**9:09d}Z",
            "last": f"2023-11-14T22:14:{i % 60:02d}Z",
            "packets": 1 + i % 1000,
            "bytes": 60 + i * 7 % 100000,
            **({"approximate": True} if i % 97 == 0 else {}),
        }
        for i in range(rows)
    ]
    window = {"start": "2023-11-14T22:13:00Z", "end": "2023-11-14T22:15:00Z"}
    return orjson.dumps({"window": window, "flows": flows, "truncated": False, "failed": {}})


def listing(body: bytes, check: bool) -> tuple[float, float]:
    """CPU seconds of the whole listing, and of the check alone."""
    started = time.process_time()
    parsed = orjson.loads(body)
    checked_at = time.process_time()
    assert not check or (valid_window(parsed["window"]) and valid_rows(parsed["flows"]))
    check_cost = time.process_time() - checked_at
    merged = merge_flows([NodeFlows(Node(id=1), body=parsed)], sort="first", limit=len(parsed["flows"]))
    orjson.dumps(merged)
    return time.process_time() - started, check_cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    body = node_answer(args.rows)
    best = {False: (1e9, 0.0), True: (1e9, 0.0)}
    for _ in range(args.runs):
        for check in (False, True):  # interleaved: the machine's load falls on both alike
            best[check] = min(best[check], listing(body, check))
    print(f"{args.rows} rows, {len(body) / 1e6:.1f} MB of JSON, load {os.getloadavg()[0]:.1f}")
    print(f"  listing without the check   {best[False][0] * 1000:7.1f} ms CPU")
    print(
        f"  listing with the check      {best[True][0] * 1000:7.1f} ms CPU (the check {best[True][1] * 1000:.1f} ms)"
    )


if __name__ == "__main__":
    main()
