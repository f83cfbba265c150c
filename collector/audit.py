"""The audit trail: one log line per /data.pcap and /flows, beside the request log's row.

Logger ``par.audit``, level INFO. Plain: ``audit data.pcap by par_AbCd1234 from 203.0.113.9:
nodes 1,3 [start, end] src_addr=... -> 200, 4096 B in 0.12 s``; with ``PAR_LOG_FORMAT=json``
the object carries the same facts as fields (``audit_*``), for a SIEM. Never a credential: the
query is the request log's, which leaves ``api_key`` out.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collector.requestlog import RequestLog

log = logging.getLogger("par.audit")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def audit_fields(entry: RequestLog) -> dict[str, Any]:
    """What the audit line says of a finished request: who, which nodes, selectors, window, outcome."""
    user = getattr(entry, "user", None)
    return {
        "view": entry.view,
        "method": entry.method,
        "key": entry.key_prefix or None,
        "user": getattr(user, "username", None) if user is not None else None,
        "client": entry.client_ip,
        "nodes": [int(n) for n in entry.nodes.split(",") if n] if entry.nodes else [],
        "node_outcomes": entry.outcomes or [],
        "selectors": entry.query,
        "src_addr": entry.src_addr,
        "src_port": entry.src_port,
        "dst_addr": entry.dst_addr,
        "dst_port": entry.dst_port,
        "proto": entry.proto,
        "window_start": _iso(entry.start),
        "window_end": _iso(entry.end),
        "status": entry.status,
        "bytes": entry.bytes_sent,
        "duration_s": entry.duration,
        "error": entry.error or None,
    }


def _flow(fields: dict[str, Any]) -> str:
    """The selectors from the row's columns, when the query as asked was not kept."""
    names = ("src_addr", "src_port", "dst_addr", "dst_port", "proto")
    return "&".join(f"{n}={fields[n]}" for n in names if fields[n] is not None) or "-"


def audit(entry: RequestLog) -> None:
    """Log the audit line of a finished request (``RequestLog.finish`` calls it after writing the row)."""
    fields = audit_fields(entry)
    who = fields["key"] or (f"user {fields['user']}" if fields["user"] else "nobody")
    window = f"[{fields['window_start']}, {fields['window_end']}]" if fields["window_start"] else "[]"
    log.info(
        "audit %s by %s from %s: nodes %s %s %s -> %s, %d B in %.2f s%s",
        fields["view"],
        who,
        fields["client"] or "-",
        ",".join(map(str, fields["nodes"])) or "-",
        window,
        fields["selectors"] or _flow(fields),
        fields["status"],
        fields["bytes"] or 0,
        fields["duration_s"] or 0.0,
        f" ({fields['error']})" if fields["error"] else "",
        extra={"audit": {f"audit_{name}": value for name, value in fields.items()}},
    )
