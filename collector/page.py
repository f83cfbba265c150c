"""The analysts' web page under /ui/: a Django login, then one page that asks the API with the session.

The page is HTML with its own script and style (collector/static/ui/, served by WhiteNoise with
the admin's files). Every question it asks goes to the API (``/flows``, ``/data.pcap``) with the
session, is judged there by the user's grant (collector.auth.SessionGrantAuthentication) and is
logged under the user.
"""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from collector.models import UserGrant

LOGIN_URL = "/ui/login"


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
