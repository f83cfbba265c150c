"""A /flows answer from the nodes asked: each node's rows named by it, merged, sorted and cut once more."""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import exceptions

from api.flowparams import ListingOptions
from collector import proxy
from collector.models import Node, RequestLog

SORT_KEYS = {"first": ("first", False), "last": ("last", False), "-bytes": ("bytes", True)}
SORT_KEYS["-packets"] = ("packets", True)


def flows_from(
    nodes: list[Node], params: Mapping[str, str], options: ListingOptions, entry: RequestLog
) -> dict:
    """The nodes' listings as one (SPEC "GET /flows"); a node that fails is named under ``failed``.

    When every node failed, the first failure is raised (a 502/504 as for one node); a node's own
    refusal (400/404) passes through when it is the only node asked.
    """
    flows, failed, truncated, window, refusals = [], {}, False, None, []
    for node in nodes:
        try:
            answer = proxy.node_json(node, "flows", params)
        except exceptions.APIException as exc:
            failed[str(node.id)] = str(exc.detail)
            entry.node_answered(node.id, exc.status_code, 0, str(exc.detail))
            refusals.append(exc)
            continue
        body = answer.data if isinstance(answer.data, dict) else {}
        if answer.status_code != 200:
            error = str(body.get("error", f"answered {answer.status_code}"))
            failed[str(node.id)] = error
            entry.node_answered(node.id, answer.status_code, 0, error)
            refusals.append(answer)
            continue
        entry.node_answered(node.id, 200, 0, "")
        window = window or body.get("window")
        truncated = truncated or bool(body.get("truncated"))
        flows += [{"node": str(node.id), **row} for row in body.get("flows", [])]
    if len(failed) == len(nodes):
        first = refusals[0]
        if isinstance(first, exceptions.APIException):
            raise first
        raise exceptions.APIException(first.data.get("error")) if first.status_code >= 500 else _Passed(first)
    field, descending = SORT_KEYS[options.sort]
    flows.sort(key=lambda row: row[field], reverse=descending)
    truncated = truncated or len(flows) > options.limit
    return {"window": window, "flows": flows[: options.limit], "truncated": truncated, "failed": failed}


class _Passed(exceptions.APIException):
    """A node's refusal (its status and error) passed on to the client."""

    def __init__(self, answer) -> None:
        super().__init__(answer.data.get("error"))
        self.status_code = answer.status_code
