"""Every error is JSON: ``{"error": "<message>"}`` with a fitting status.

A view raises (``ApiError``, a DRF exception, a ``FlowParamError``) and ``exception_handler``
renders the answer; only what runs outside DRF's views (middleware, Django's own error handlers,
plain Django views) answers with ``error_response``, which writes the same bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from django.http import HttpResponse
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from api.flowparams import FlowParamError

log = logging.getLogger("parsite")


class ApiError(exceptions.APIException):
    """An error answer: its message, its status, and the headers it carries (e.g. ``X-PAR-Window``)."""

    def __init__(
        self, message: str, status_code: int, headers: Mapping[str, str] | None = None, code: str = "error"
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers = dict(headers or {})
        self.default_code = code  # the reason /metrics counts a refusal by


def error_response(message: str, status_code: int) -> HttpResponse:
    """The error answer outside DRF's views, byte for byte what the exception handler's are."""
    body = JSONRenderer().render({"error": message})
    return HttpResponse(body, content_type="application/json", status=status_code)


def refusal_response(message: str, status_code: int, reason: str) -> HttpResponse:
    """``error_response`` with why it refused, as /metrics counts it (``par_refusals_total``)."""
    response = error_response(message, status_code)
    response.par_refusal = reason  # type: ignore[attr-defined]
    return response


def too_large_message(estimate_bytes: int, estimate_packets: int, maximum: int) -> str:
    """The 413 of an answer estimated over PAR_MAX_ANSWER_BYTES without limit_bytes (node and collector)."""
    return (
        f"answer too large: up to {estimate_bytes} bytes ({estimate_packets} packets) estimated, more than"
        f" PAR_MAX_ANSWER_BYTES ({maximum}); narrow the selectors or the window, or set limit_bytes"
    )


def _message(detail: object) -> str:
    """Flatten DRF's detail (str, list or dict) into one readable message."""
    if isinstance(detail, dict):
        parts = []
        for field, value in detail.items():
            text = _message(value)
            parts.append(text if field in ("non_field_errors", "detail") else f"{field}: {text}")
        return "; ".join(parts)
    if isinstance(detail, list):
        return "; ".join(_message(item) for item in detail)
    return str(detail)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, FlowParamError):  # a bad parameter, named
        exc = ApiError(str(exc), status.HTTP_400_BAD_REQUEST)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unexpected: Django's 500 handler answers, and logs it
    detail = exc.detail if isinstance(exc, exceptions.APIException) else response.data
    response.data = {"error": _message(detail)}
    if response.status_code == status.HTTP_403_FORBIDDEN and isinstance(exc, exceptions.NotAuthenticated):
        response.status_code = status.HTTP_401_UNAUTHORIZED
    if isinstance(exc, exceptions.APIException):
        response.par_refusal = exc.default_code  # type: ignore[attr-defined]  # counted by api.metrics
    for name, value in getattr(exc, "headers", {}).items():
        response[name] = value
    return response


def handler400(request, exception=None):
    return error_response("bad request", 400)


def handler403(request, exception=None):
    return error_response("forbidden", 403)


def handler404(request, exception=None):
    return error_response("not found", 404)


def handler500(request):
    return error_response("internal error", 500)
