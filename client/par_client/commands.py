"""What each ``par`` command does: ask the collector, show the answer."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from par_client.config import Settings
from par_client.errors import OK, SERVER_ERROR, OutputError, UsageError
from par_client.http import Collector, iter_body
from par_client.pcapcount import PacketCounter
from par_client.progress import Progress, size
from par_client.terminal import printable, printable_lines

PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6", 132: "sctp"}
FLOW_COLUMNS = ("node", "proto", "source", "destination", "first", "last", "packets", "bytes", "community_id")


def warn(message: str) -> None:
    print(f"par: {printable(message)}", file=sys.stderr)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def ping(settings: Settings, *, as_json: bool) -> int:
    answer = Collector(settings).get_json("ping")
    if as_json:
        print_json(answer)
        return OK
    uptime = int(float(answer.get("uptime", 0)))
    days, rest = divmod(uptime, 86400)
    up = (f"{days}d " if days else "") + f"{rest // 3600}h {rest % 3600 // 60:02d}m"
    print(
        printable(
            f"{settings.url}: {answer.get('role', '?')} {answer.get('version', '?')} "
            f"(API {answer.get('api_version', '?')}), up {up}, clock {answer.get('date', '?')}"
        )
    )
    return OK


def nodes(settings: Settings, node: str | None, command: str, *, as_json: bool) -> int:
    collector = Collector(settings)
    if node is not None:
        if not node.isdigit():
            raise UsageError(f"a node is asked by its number, not {node!r}")
        print_json(collector.get_json(f"nodes/{node}/{command}"))
        return OK
    answer = collector.get_json("nodes/list")
    if as_json:
        print_json(answer)
        return OK
    for node_id, address in sorted(answer.items(), key=lambda item: int(item[0]) if item[0].isdigit() else 0):
        print(f"{printable(node_id)}\t{printable(address)}")
    return OK


def endpoint(addr: Any, port: Any) -> str:
    text = str(addr)
    if port is None or port == "":
        return text
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def short_time(text: Any) -> str:
    """``2026-12-01T05:40:00.123456Z`` as ``2026-12-01 05:40:00.123``: readable in a table."""
    text = str(text or "")
    if "T" in text and text.endswith("Z"):
        day, clock = text[:-1].split("T", 1)
        whole, _, fraction = clock.partition(".")
        return f"{day} {whole}" + (f".{fraction[:3]}" if fraction else "")
    return text


def flow_row(flow: dict) -> list[str]:
    proto = flow.get("proto")
    packets = str(flow.get("packets", ""))
    if flow.get("approximate"):
        packets = "~" + packets  # the row counts a file reaching outside the window
    return [
        str(flow.get("node", "")),
        PROTOCOLS.get(proto, str(proto)) if isinstance(proto, int) else str(proto or ""),
        endpoint(flow.get("src_addr", ""), flow.get("src_port")),
        endpoint(flow.get("dst_addr", ""), flow.get("dst_port")),
        short_time(flow.get("first")),
        short_time(flow.get("last")),
        packets,
        str(flow.get("bytes", "")),
        str(flow.get("community_id") or ""),
    ]


def print_table(rows: list[list[str]], header: tuple[str, ...]) -> None:
    widths = [
        max(len(header[i]), *(len(row[i]) for row in rows)) if rows else len(header[i])
        for i in range(len(header))
    ]
    numeric = {"packets", "bytes"}
    for line in (list(header), *rows):
        cells = [
            cell.rjust(widths[i]) if header[i] in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        print(printable("  ".join(cells).rstrip()))


def flows(settings: Settings, params: dict[str, str], output: str) -> int:
    collector = Collector(settings)
    if output == "csv":
        terminal = sys.stdout.isatty()
        with collector.request("flows", {**params, "output": "csv"}) as response:
            for chunk in iter_body(response):
                sys.stdout.buffer.write(printable_lines(chunk) if terminal else chunk)
            report_failed_nodes(response.headers)
        sys.stdout.flush()
        return OK
    answer = collector.get_json("flows", params)
    if output == "json":
        print_json(answer)
    else:
        print_table([flow_row(flow) for flow in answer.get("flows", [])], FLOW_COLUMNS)
    if answer.get("truncated"):
        warn(
            f"more flows matched than the {len(answer.get('flows', []))} listed: narrow the query or raise --limit"
        )
    for node_id, why in (answer.get("failed") or {}).items():
        warn(f"node {node_id} left out: {why}")
    return OK


def report_failed_nodes(headers) -> bool:
    """Warn about the nodes an answer left out (X-PAR-Nodes-Failed); True when there were any."""
    failed = headers.get("X-PAR-Nodes-Failed", "").strip()
    if failed:
        warn(f"nodes left out of the answer: {failed}")
    return bool(failed)


def pcap(
    settings: Settings,
    params: dict[str, str],
    output: str | None,
    *,
    quiet: bool,
    strict: bool,
    record: bytes | None = None,
) -> int:
    if output is None:
        if sys.stdout.isatty():
            raise UsageError(
                "not writing a pcap to the terminal: use -o FILE, or pipe it (| wireshark -k -i -)"
            )
        output = "-"
    else:
        check_writable(Path(output))  # before the collector is asked, not after the download started
    started = time.monotonic()
    collector = Collector(settings)
    with collector.request("data.pcap", params, record) as response:
        if record is not None and not quiet:
            warn(f"asked: {response.headers.get('X-PAR-Query', '?')}")
            if response.headers.get("X-PAR-Query-Note"):
                warn(response.headers["X-PAR-Query-Note"])
        left_out = report_failed_nodes(response.headers)
        damaged = response.headers.get("X-PAR-Damaged")
        if damaged:
            warn(f"damaged capture data skipped: {damaged}")
        estimate = response.headers.get("X-PAR-Estimate-Bytes") or response.headers.get("Content-Length")
        total = int(estimate) if estimate and estimate.isdigit() else None
        show = not quiet and sys.stderr.isatty()
        progress = Progress(sys.stderr, total) if show else None
        counter = PacketCounter()
        try:
            if output == "-":
                written = copy(response, sys.stdout.buffer, counter, progress)
            else:
                written = download_to(Path(output), response, counter, progress)
        finally:
            if progress is not None:
                progress.close()
    if not quiet:
        packets = f"{counter.packets} packets, " if counter.packets is not None else ""
        where = "stdout" if output == "-" else output
        window = response.headers.get("X-PAR-Window")
        nodes_in = response.headers.get("X-PAR-Nodes")
        extra = "".join([f", nodes {nodes_in}" if nodes_in else "", f", window {window}" if window else ""])
        warn(
            f"{packets}{written} bytes ({size(written)}) to {where} in {time.monotonic() - started:.1f} s{extra}"
        )
    return SERVER_ERROR if strict and left_out else OK


def copy(response, out: IO[bytes], counter: PacketCounter, progress: Progress | None) -> int:
    written = 0
    for chunk in iter_body(response):
        out.write(chunk)
        counter.feed(chunk)
        written += len(chunk)
        if progress is not None:
            progress.update(len(chunk))
    out.flush()
    return written


def check_writable(path: Path) -> None:
    """OutputError unless a file can be made in ``path``'s directory."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OutputError(f"cannot write {path}: no such directory {directory}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: the directory {directory} is not writable")


def download_to(path: Path, response, counter: PacketCounter, progress: Progress | None) -> int:
    """Into a temporary file beside ``path``, renamed only when complete: no half pcap under its name."""
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}")
    try:
        with os.fdopen(fd, "wb") as out:
            written = copy(response, out, counter, progress)
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}")
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return written


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
