"""``par``: the command line of Packets at Rest (``par --help``; docs/client.md)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from par_client import __version__, commands, exports, extcap
from par_client.config import ENV_CONFIG, ENV_KEY, ENV_URL, resolve
from par_client.errors import BROKEN_PIPE, INTERRUPTED, OK, USAGE, ParError, UsageError
from par_client.terminal import printable

# The API's selectors (docs/SPEC.md "Selecting packets"), each an option spelt --src-addr or --src_addr.
SELECTORS = (
    ("src_addr", "ADDR", "address or network (CIDR) of one end"),
    ("src_port", "PORT", "port of that end"),
    ("dst_addr", "ADDR", "address or network (CIDR) of the other end"),
    ("dst_port", "PORT", "port of the other end"),
    ("proto", "PROTO", "tcp, udp, sctp, icmp, icmp6 or a number 0-255"),
    ("community_id", "ID", "the flow's Community ID (1:<base64>)"),
    ("start_time", "TIME", "window start: ISO 8601, epoch seconds, '2015-02-26 4pm', -15m, '2h ago'"),
    ("end_time", "TIME", "window end (default: now)"),
    ("node_id", "NODES", "a node, a list (1,3) or all (default: node_id in the config file)"),
)
PCAP_OPTIONS = (
    ("format", "FORMAT", "pcap (default; pcapng when link types mix) or pcapng"),
    ("limit_packets", "N", "stop after the first N packets"),
    ("limit_bytes", "N", "stop before N bytes are exceeded"),
)
FLOWS_OPTIONS = (
    ("limit", "N", "at most N flows (API default 1000)"),
    ("sort", "ORDER", "first (default), last, -bytes or -packets"),
)
MAX_RECORD_BYTES = 1 << 20  # the collector's bound on a record
TERM = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)=(.*)", re.S)

EPILOG = f"""\
terms:
  Parameters may also be given as NAME=VALUE terms, with the API's names:
    par pcap src_addr=10.0.0.1 dst_port=443 start_time=-15m node_id=1 -o out.pcap

configuration:
  --url / --api-key, else ${ENV_URL} / ${ENV_KEY}, else the config file
  (${ENV_CONFIG}, else ~/.config/par/config; mode 600) with lines
    url = https://par.example.org
    api_key = par_...
    node_id = 1

exit status:
  0 ok   1 the API refused (4xx)   2 usage or configuration   3 collector or node error (5xx)
  4 collector unreachable   5 answer cut short (output incomplete)   6 output not writable
  130 interrupted
  141 the reader of stdout went away
"""


def option_names(name: str) -> list[str]:
    dashed = "--" + name.replace("_", "-")
    return [dashed, "--" + name] if "_" in name else [dashed]


def add_params(parser: argparse.ArgumentParser, params: Sequence[tuple[str, str, str]], title: str) -> None:
    group = parser.add_argument_group(title)
    for name, metavar, text in params:
        group.add_argument(*option_names(name), dest=name, metavar=metavar, help=text)


def connection_options(parser: argparse.ArgumentParser, default) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--url", default=default, help=f"the collector, e.g. https://par.example.org (${ENV_URL})"
    )
    group.add_argument("--api-key", "--api_key", default=default, help=f"the API key (${ENV_KEY})")
    group.add_argument("--config", default=default, help=f"config file (${ENV_CONFIG}, ~/.config/par/config)")
    group.add_argument("--cacert", default=default, help="CA bundle to check the collector's certificate")
    group.add_argument(
        "--insecure", action="store_true", default=default, help="do not check the certificate"
    )
    group.add_argument(
        "--timeout", type=float, default=default, help="seconds to wait for data before giving up (300)"
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="no progress bar nor summary on stderr"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="par",
        description="Ask a Packets at Rest collector for flows and their packets.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"par {__version__}")
    connection_options(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Options after the command as well as before it; SUPPRESS keeps the subparser from
    # overwriting a value given before the command with its own default.
    common = argparse.ArgumentParser(add_help=False)
    connection_options(common, argparse.SUPPRESS)

    ping = sub.add_parser("ping", parents=[common], help="is the collector up: version, uptime")
    ping.add_argument("--json", action="store_true", help="the API's JSON answer")

    nodes = sub.add_parser(
        "nodes", parents=[common], help="the nodes this key may query, or one node's ping/status/..."
    )
    nodes.add_argument("node", nargs="?", metavar="NODE_ID", help="ask this node")
    nodes.add_argument(
        "node_command",
        nargs="?",
        default="status",
        metavar="COMMAND",
        choices=("ping", "status", "plugins", "routes"),
        help="ping, status (default), plugins or routes",
    )
    nodes.add_argument("--json", action="store_true", help="the API's JSON answer")

    flows = sub.add_parser(
        "flows",
        parents=[common],
        help="list the flows matched (GET /flows)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    query_arguments(flows)
    add_params(flows, FLOWS_OPTIONS, "listing")
    flows.add_argument(
        "--output", choices=("table", "json", "csv"), default="table", help="table (default), json or csv"
    )

    pcap = sub.add_parser(
        "pcap",
        parents=[common],
        help="download the packets matched (GET /data.pcap)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    query_arguments(pcap)
    add_params(pcap, PCAP_OPTIONS, "answer")
    pcap.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write to FILE ('-' for stdout, the default when it is no terminal)",
    )
    pcap.add_argument(
        "--strict", action="store_true", help="exit 3 when any node asked was left out of the answer"
    )
    pcap.add_argument(
        "--event",
        metavar="FILE",
        help="a file holding one Suricata EVE or Zeek conn.log record ('-': stdin): its flow and window "
        "are asked (--start-time/--end-time override the window)",
    )
    export = sub.add_parser(
        "export",
        parents=[common],
        help="export the packets matched as a job (POST /exports), then download it, resuming",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    query_arguments(export)
    add_params(export, PCAP_OPTIONS, "answer")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: export-<id>.pcap)")
    export.add_argument("--no-wait", action="store_true", help="start the job, print its id, do not wait")

    listing = sub.add_parser("exports", parents=[common], help="this key's export jobs (GET /exports)")
    listing.add_argument("--json", action="store_true", help="the API's JSON answer")
    extcap = sub.add_parser(
        "extcap",
        parents=[common],
        help="make the collector a capture source in Wireshark and tshark (an extcap), or remove it",
    )
    extcap.add_argument(
        "action",
        choices=("install", "uninstall"),
        help="install into ~/.config/wireshark/extcap/ (reads url and api_key from the config file) or remove",
    )
    return parser


def query_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("terms", nargs="*", metavar="NAME=VALUE", help="API parameters as terms")
    add_params(parser, SELECTORS, "selectors (the API's parameters)")
    parser.add_argument(
        "--last",
        metavar="DURATION",
        help="the last DURATION (15m, 1h, 1d): start_time=-DURATION, end_time=now",
    )


def query_params(
    args: argparse.Namespace, extra: Sequence[tuple[str, str, str]], default_node: str | None
) -> dict[str, str]:
    """The API parameters of a flows/pcap command: terms, then options (which win), then defaults."""
    params: dict[str, str] = {}
    for term in args.terms:
        match = TERM.fullmatch(term)
        if not match:
            raise UsageError(f"{term!r} is not a NAME=VALUE term (e.g. src_addr=10.0.0.1)")
        params[match.group(1).replace("-", "_").lower()] = match.group(2)
    for name, _, _ in (*SELECTORS, *extra):
        value = getattr(args, name, None)
        if value is not None:
            params[name] = value
    if args.last:
        if "start_time" in params:
            raise UsageError("--last and start_time both give the window's start: use one")
        params["start_time"] = "-" + args.last.lstrip("-")
        params.setdefault("end_time", "now")
    if "node_id" not in params and (os.environ.get("PAR_NODE_ID") or default_node):
        params["node_id"] = os.environ.get("PAR_NODE_ID") or default_node or ""
    return params


def glue_values(argv: Sequence[str]) -> list[str]:
    """``--start-time -15m`` as ``--start-time=-15m``: argparse would take ``-15m`` for an option."""
    takes_value = {
        "--" + name.replace("_", "-") for name, _, _ in (*SELECTORS, *PCAP_OPTIONS, *FLOWS_OPTIONS)
    }
    takes_value |= {"--" + name for name, _, _ in (*SELECTORS, *PCAP_OPTIONS, *FLOWS_OPTIONS)}
    takes_value |= {"--last", "--event"}
    glued: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token in takes_value:
            value = next(tokens, None)
            glued.append(token if value is None else f"{token}={value}")
        else:
            glued.append(token)
    return glued


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The command line; NAME=VALUE terms may stand anywhere after the command, among the options."""
    parser = build_parser()
    args, extra = parser.parse_known_args(glue_values(argv))
    strays = [token for token in extra if not TERM.fullmatch(token) or not hasattr(args, "terms")]
    if strays:
        parser.error(f"unrecognized arguments: {' '.join(strays)}")
    if extra:
        args.terms = [*args.terms, *extra]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse: --help is 0, a usage error 2
        return int(exc.code or 0) if isinstance(exc.code, int) else USAGE
    try:
        return run(args)
    except ParError as exc:
        print(f"par: {printable(exc)}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("par: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # The reader (wireshark, head) went away: say nothing more on a closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE


def run(args: argparse.Namespace) -> int:
    if args.command == "extcap":
        return extcap_command(args.action, args.config)
    settings = resolve(
        url=args.url,
        api_key=args.api_key,
        config=args.config,
        ca_bundle=args.cacert,
        insecure=bool(args.insecure),
        timeout=args.timeout,
    )
    if args.command == "ping":
        return commands.ping(settings, as_json=args.json)
    if args.command == "nodes":
        return commands.nodes(settings, args.node, args.node_command, as_json=args.json)
    if args.command == "flows":
        params = query_params(args, FLOWS_OPTIONS, settings.node_id)
        return commands.flows(settings, params, args.output)
    if args.command == "exports":
        return exports.exports(settings, as_json=args.json)
    params = query_params(args, PCAP_OPTIONS, settings.node_id)
    if args.command == "export":
        return exports.export(settings, params, args.output, quiet=bool(args.quiet), wait=not args.no_wait)
    record = None
    if args.event is not None:
        named = [name for name, _, _ in SELECTORS[:6] if name in params]
        if named:
            raise UsageError(f"--event names the flow: drop {', '.join(named)}")
        record = read_record(args.event)
    return commands.pcap(
        settings, params, args.output, quiet=bool(args.quiet), strict=args.strict, record=record
    )


def extcap_command(action: str, config: str | None) -> int:
    if action == "install":
        launcher = extcap.install(config)
        print(f"installed {launcher}: restart Wireshark; its interfaces are par-<node> and par-all")
    else:
        removed = extcap.uninstall()
        print(f"removed {removed}" if removed else "par's extcap was not installed")
    return OK


def read_record(name: str) -> bytes:
    """The record ``--event`` names (``-``: stdin), at most MAX_RECORD_BYTES; the collector reads it."""
    try:
        if name == "-":
            data = sys.stdin.buffer.read(MAX_RECORD_BYTES + 1)
        else:
            with open(name, "rb") as file:
                data = file.read(MAX_RECORD_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror or exc}")
    if len(data) > MAX_RECORD_BYTES:
        raise UsageError(
            f"{name}: a record is at most {MAX_RECORD_BYTES} bytes (one Suricata or Zeek record)"
        )
    if not data.strip():
        raise UsageError(f"{name} is empty: one Suricata EVE or Zeek conn.log record (JSON) is required")
    return data


if __name__ == "__main__":
    sys.exit(main())
