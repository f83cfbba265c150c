"""The analysts' web page under /ui/: a Django login, then one page that asks the API with the session.

The page itself is static HTML and its own script (collector/static/ui/); every question it
asks goes to the API (``/flows``, ``/data.pcap``, ``/nodes/list``) and is judged there by the
user's grant (collector.auth.SessionGrantAuthentication), logged under the user.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.static import serve

from api.errors import error_response
from collector.models import UserGrant

LOGIN_URL = "/ui/login"
ASSETS = Path(__file__).resolve().parent / "static" / "ui"
_FILES = frozenset(p.name for p in ASSETS.iterdir() if p.is_file())


@never_cache
@login_required(login_url=LOGIN_URL)
def page(request):
    """The query form, the flows table, the timeline and the downloads."""
    grant = UserGrant.of(request.user)
    return render(request, "ui/page.html", {"grant": grant, "nodes": grant.queryable_nodes()})


def to_page(request):
    return redirect("/ui/")


class LoginView(auth_views.LoginView):
    """Django's login, in the page's own look."""

    template_name = "ui/login.html"
    redirect_authenticated_user = True
    next_page = "/ui/"

    def get_default_redirect_url(self) -> str:
        return "/ui/"


class LogoutView(auth_views.LogoutView):
    next_page = LOGIN_URL


def asset(request, name: str):
    """One of the page's own files (its script and style), or a JSON 404.

    WhiteNoise answers these first where it is installed; this keeps the page whole without it.
    """
    if name not in _FILES:
        return error_response("not found", 404)
    return serve(request, name, document_root=ASSETS)
