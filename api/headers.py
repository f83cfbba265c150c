"""What every answer of either role carries, whoever answered it: a middleware outside all the others.

- The security headers (``nosniff``, ``X-Frame-Options``, ``Referrer-Policy``, HSTS over TLS), as
  Django's own middleware sets them, on answers made before those run too: a node's ACL refusal.
- A Content-Security-Policy on the HTML of the web page and the admin: their scripts and styles
  are files of this server, nothing inline, nothing from elsewhere.
- ``Cache-Control: no-store`` on JSON and CSV answers, as on pcaps: a query's answer is not for a
  shared cache, nor for the browser's disk.
- TRACE (and TRACK) refused with a 405 before anything else reads the request.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware

from api.errors import error_response

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Pages of ours whose HTML holds no inline script or style (the API's /docs is Swagger UI's: not these).
POLICED_PATHS = ("/ui/", "/ui", "/admin/")
REFUSED_METHODS = frozenset({"TRACE", "TRACK"})
UNSTORED_TYPES = ("application/json", "text/csv")


class AnswerHeaders:
    """Middleware (after the metrics, before the rest): the headers above on every answer."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # Only their process_response is used: it adds what is missing, as often as it is called.
        self.security = SecurityMiddleware(get_response)
        self.frames = XFrameOptionsMiddleware(get_response)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method in REFUSED_METHODS:
            response: HttpResponse = error_response(f"method {request.method} is not allowed", 405)
            response["Allow"] = "GET, HEAD, POST, OPTIONS"
        else:
            response = self.get_response(request)
        response = self.security.process_response(request, response)
        response = self.frames.process_response(request, response)
        content_type = response.get("Content-Type", "")
        if content_type.startswith("text/html") and request.path.startswith(POLICED_PATHS):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        if content_type.startswith(UNSTORED_TYPES):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
