"""The collector as a Wireshark capture source: an extcap (Wireshark's ``doc/extcap.adoc`` interface).

``par extcap install`` writes a small launcher into the personal extcap folder
(``~/.config/wireshark/extcap/par``) that runs ``python -m par_client.extcap`` with par's own
configuration file (url and key there, mode 600: no key on any command line). Wireshark then
asks it:

- ``--extcap-interfaces``: one interface per node the key may query (``par-1``, ...) and ``par-all``;
- ``--extcap-dlts --extcap-interface par-1``: the link type (the answer's pcap header names the real one);
- ``--extcap-config --extcap-interface par-1``: the options, the API's selectors and window;
- ``--capture --extcap-interface par-1 --fifo PATH [--start-time -15m ...]``: the answer of
  ``GET /data.pcap`` written into the fifo as it arrives.

Option names are lower case with one dash (tshark 4.0 turns ``par-1`` and ``--start-time`` into the
preference ``extcap.par_1.starttime`` and aborts on a capital letter), and a value may begin with
``-`` (``--start-time -15m``, passed on every capture): every option takes the next word whole.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from par_client import __version__
from par_client.config import Settings, default_config_path, read_config_file, resolve
from par_client.errors import ParError, UsageError

# par_client.http (and requests, ~1 s to import on a busy machine) is imported only by the calls
# that ask the collector: Wireshark runs this for --extcap-config and --extcap-dlts too.

PREFIX = "par-"
ALL = "all"
LAUNCHER = "par"
MARK = "# Packets at Rest extcap launcher (par extcap install)"
# (option, API parameter, display, type, default, tooltip): each an interface option in Wireshark.
OPTIONS = (
    ("start-time", "start_time", "Start time", "string", "-15m", "window start: -15m, -2h, ISO 8601, epoch"),
    ("end-time", "end_time", "End time", "string", "now", "window end: now, ISO 8601, epoch"),
    ("src-addr", "src_addr", "Address (one end)", "string", "", "address or network (CIDR) of one end"),
    ("src-port", "src_port", "Port (that end)", "string", "", "port of that end"),
    ("dst-addr", "dst_addr", "Address (other end)", "string", "", "address or network of the other end"),
    ("dst-port", "dst_port", "Port (other end)", "string", "", "port of the other end"),
    ("proto", "proto", "Protocol", "string", "", "tcp, udp, sctp, icmp, icmp6 or a number 0-255"),
    ("community-id", "community_id", "Community ID", "string", "", "the flow's Community ID (1:<base64>)"),
    ("limit-packets", "limit_packets", "At most packets", "string", "", "stop after this many packets"),
)
_BY_OPTION = {"--" + option: param for option, param, *_ in OPTIONS}
# Wireshark's own options that take a value (some unused here).
_EXTCAP_VALUED = {
    "--extcap-interface",
    "--fifo",
    "--extcap-version",
    "--extcap-capture-filter",
    "--extcap-control-in",
    "--extcap-control-out",
    "--extcap-reload-option",
}


def extcap_dir() -> Path:
    """The personal extcap folder Wireshark and tshark scan on Linux."""
    return Path.home() / ".config" / "wireshark" / "extcap"


# ---------------------------------------------------------------- install / uninstall


def install(config: str | None) -> Path:
    """Write the launcher; the configuration file must hold the collector's url and key."""
    path = Path(config).expanduser().resolve() if config else default_config_path()
    found = read_config_file(path, required=True)
    missing = [name for name in ("url", "api_key") if not found.get(name)]
    if missing:
        raise UsageError(
            f"the extcap reads {path}: put {' and '.join(missing)} there (mode 600) first, "
            "never on a command line"
        )
    client_root = Path(__file__).resolve().parent.parent
    launcher = extcap_dir() / LAUNCHER
    launcher.parent.mkdir(parents=True, exist_ok=True)
    if launcher.exists() and MARK not in launcher.read_text(errors="replace"):
        raise UsageError(f"{launcher} exists and is not par's launcher: not replacing it")
    text = (
        "#!/bin/sh\n"
        f"{MARK}\n"
        f"PAR_CONFIG={shlex.quote(str(path))}; export PAR_CONFIG\n"
        f"PYTHONPATH={shlex.quote(str(client_root))}${{PYTHONPATH:+:$PYTHONPATH}}; export PYTHONPATH\n"
        f'exec {shlex.quote(sys.executable)} -m par_client.extcap "$@"\n'
    )
    temporary = launcher.with_name(f".{LAUNCHER}.tmp")
    temporary.write_text(text)
    temporary.chmod(stat.S_IRWXU)
    os.replace(temporary, launcher)
    return launcher


def uninstall() -> Path | None:
    """Remove the launcher (only ours); the path removed, or None when there was none."""
    launcher = extcap_dir() / LAUNCHER
    if not launcher.exists():
        return None
    if MARK not in launcher.read_text(errors="replace"):
        raise UsageError(f"{launcher} is not par's launcher: not removing it")
    launcher.unlink()
    return launcher


# ---------------------------------------------------------------- what Wireshark runs


def settings() -> Settings:
    """par's configuration file only (PAR_CONFIG, set by the launcher): the key never on a command line."""
    path = default_config_path()
    found = read_config_file(path, required=True)
    return resolve(url=found.get("url"), api_key=found.get("api_key"), config=str(path))


def parse_args(argv: Sequence[str]) -> tuple[set[str], dict[str, str], dict[str, str]]:
    """(flags, Wireshark's valued options, API parameters); every valued option takes the next word whole."""
    flags: set[str] = set()
    extcap: dict[str, str] = {}
    params: dict[str, str] = {}
    words = iter(argv)
    for word in words:
        name, equals, value = word.partition("=")
        if name in _BY_OPTION or name in _EXTCAP_VALUED:
            if not equals:
                following = next(words, None)
                if following is None:
                    raise UsageError(f"{name} needs a value")
                value = following
            if name in _BY_OPTION:
                if value.strip():  # an option left empty in Wireshark asks nothing
                    params[_BY_OPTION[name]] = value.strip()
            else:
                extcap[name] = value
        elif word.startswith("--"):
            flags.add(word)
        else:
            raise UsageError(f"unexpected argument {word!r}")
    return flags, extcap, params


def interfaces(out: IO[str]) -> None:
    from par_client.http import Collector

    out.write(f"extcap {{version={__version__}}}{{display=Packets at Rest collector}}\n")
    try:
        nodes = Collector(settings()).get_json("nodes/list")
    except ParError as exc:  # the interfaces still show; a capture then says what is wrong
        print(f"par extcap: {exc}", file=sys.stderr)
        nodes = {}
    names = sorted(nodes, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))
    for node_id in names:
        out.write(
            f"interface {{value={PREFIX}{node_id}}}{{display=Packets at Rest node {node_id} ({nodes[node_id]})}}\n"
        )
    out.write(f"interface {{value={PREFIX}{ALL}}}{{display=Packets at Rest: every node the key may query}}\n")


def dlts(out: IO[str]) -> None:
    out.write("dlt {number=1}{name=EN10MB}{display=as captured (the answer's pcap header names it)}\n")


def config(out: IO[str]) -> None:
    for number, (option, _, display, kind, default, tooltip) in enumerate(OPTIONS):
        line = f"arg {{number={number}}}{{call=--{option}}}{{display={display}}}{{type={kind}}}"
        if default:
            line += f"{{default={default}}}"
        out.write(line + f"{{tooltip={tooltip}}}\n")


def node_of(interface: str | None) -> str:
    if not interface or not interface.startswith(PREFIX):
        raise UsageError(f"not one of par's interfaces: {interface!r}")
    node = interface[len(PREFIX) :]
    if node != ALL and not node.isdigit():
        raise UsageError(f"not one of par's interfaces: {interface!r}")
    return node


def capture(interface: str | None, fifo: str | None, params: dict[str, str]) -> None:
    """Stream the answer into the fifo as it arrives; an API error goes to stderr, for Wireshark to show."""
    from par_client.http import Collector, iter_body

    if not fifo:
        raise UsageError("--capture needs --fifo")
    opened = False
    try:
        query = {"node_id": node_of(interface), "start_time": "-15m", **params}
        with (
            Collector(settings()).request("data.pcap", query) as response,
            open(fifo, "wb", buffering=0) as out,
        ):
            opened = True
            for chunk in iter_body(response):
                out.write(chunk)
    except ParError as exc:
        # Said before the fifo closes: Wireshark shows what the extcap wrote by then.
        print(f"par extcap: {exc}", file=sys.stderr, flush=True)
        if not opened:  # the reader waits for the fifo to open: open and close it, so it ends
            with open(fifo, "wb"):
                pass
        raise SystemExit(exc.status) from None


def run(argv: Sequence[str]) -> None:
    flags, extcap, params = parse_args(argv)
    if "--extcap-interfaces" in flags:
        interfaces(sys.stdout)
    elif "--extcap-dlts" in flags:
        node_of(extcap.get("--extcap-interface"))
        dlts(sys.stdout)
    elif "--extcap-config" in flags:
        config(sys.stdout)
    elif "--capture" in flags:
        capture(extcap.get("--extcap-interface"), extcap.get("--fifo"), params)
    else:
        raise UsageError("run by Wireshark: --extcap-interfaces, --extcap-dlts, --extcap-config or --capture")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        run(sys.argv[1:] if argv is None else argv)
    except ParError as exc:
        print(f"par extcap: {exc}", file=sys.stderr)
        return exc.status
    except BrokenPipeError:  # Wireshark stopped the capture
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
