"""What an export asks, parsed once at POST: the nodes and exactly what each is sent, and its digest.

"The same query" (SPEC "Exports") is the same holder and the same parsed request: the selectors,
the window with relative times resolved, the sorted node ids, the format and the limits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TypedDict

from api.flowparams import AnswerOptions, parse_answer_options, selection_params
from collector.models import Node
from engine.selection.selectors import Selection


class ExportRequest(TypedDict):
    nodes: list[int]
    params: dict[str, str]  # the selection and answer options, in the nodes' exact forms
    pcapng: bool


def answer_params(options: AnswerOptions) -> dict[str, str]:
    """The answer options that differ from the defaults, as the nodes are sent them."""
    params = {"format": options.format} if options.format != "pcap" else {}
    for name in ("limit_packets", "limit_bytes"):
        value = getattr(options, name)
        if value is not None:
            params[name] = str(value)
    return params


def parsed_request(nodes: Sequence[Node], flow: Selection, params: Mapping[str, str]) -> ExportRequest:
    options = parse_answer_options(params)
    sent = {**selection_params(flow), **answer_params(options)}
    return ExportRequest(
        nodes=sorted(node.id for node in nodes),
        params=dict(sorted(sent.items())),
        pcapng=options.format == "pcapng",
    )


def request_digest(request: ExportRequest) -> str:
    text = json.dumps(request, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
