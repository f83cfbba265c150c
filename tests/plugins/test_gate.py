"""The gate every plugin view sits behind: the role's own authentication, permissions and throttles."""

from __future__ import annotations

import ipaddress
import json

import pytest
from django.http import JsonResponse
from django.test import RequestFactory, override_settings
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from parsite.plugin_urls import gate_class, guard, guard_entry


class OpenView(APIView):
    """A plugin view that declares itself open to anyone."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request):
        return Response({"opened": True})

    def post(self, request):
        return Response({"posted": request.data})


def plain_view(request):
    return JsonResponse({"plain": True})


NETS = [ipaddress.ip_network("192.0.2.0/24")]


def body(response) -> dict:
    if hasattr(response, "render"):
        response.render()
    return json.loads(response.content)


def node_guarded(view):
    return guard(view, gate_class("node"))


@override_settings(PAR_NODE_ALLOW=NETS, PAR_NODE_DENY=[], PAR_NODE_SECRET="")
@pytest.mark.parametrize("view", [OpenView.as_view(), plain_view], ids=["drf", "plain"])
def test_a_node_plugin_view_refuses_an_address_outside_the_allow_list(view):
    response = node_guarded(view)(RequestFactory().get("/plugins/x/", REMOTE_ADDR="198.51.100.7"))
    assert response.status_code == 403
    assert body(response) == {
        "error": "this node does not answer this caller: address 198.51.100.7 is not allowed"
    }


@override_settings(PAR_NODE_ALLOW=NETS, PAR_NODE_DENY=[], PAR_NODE_SECRET="s3cret")
def test_a_node_plugin_view_needs_the_node_secret():
    view = node_guarded(plain_view)
    refused = view(RequestFactory().get("/plugins/x/", REMOTE_ADDR="192.0.2.1"))
    assert refused.status_code == 403
    allowed = view(
        RequestFactory().get("/plugins/x/", REMOTE_ADDR="192.0.2.1", HTTP_X_PAR_NODE_SECRET="s3cret")
    )
    assert allowed.status_code == 200
    assert allowed.content == b'{"plain": true}'


@override_settings(PAR_NODE_ALLOW=NETS, PAR_NODE_DENY=[], PAR_NODE_SECRET="")
def test_an_allowed_caller_reaches_the_plugin_view_with_its_body_intact():
    request = RequestFactory().post(
        "/plugins/x/", data={"a": [1, 2]}, content_type="application/json", REMOTE_ADDR="192.0.2.1"
    )
    response = node_guarded(OpenView.as_view())(request)
    assert response.status_code == 200
    assert body(response) == {"posted": {"a": [1, 2]}}


@override_settings(PAR_NODE_ALLOW=NETS, PAR_NODE_DENY=[], PAR_NODE_SECRET="")
def test_the_gate_does_not_refuse_a_media_type_the_plugin_may_serve():
    request = RequestFactory().get("/plugins/x/", REMOTE_ADDR="192.0.2.1", HTTP_ACCEPT="text/csv")
    assert node_guarded(plain_view)(request).status_code == 200


@override_settings(PAR_NODE_ALLOW=NETS, PAR_NODE_DENY=[], PAR_NODE_SECRET="")
def test_guarding_walks_nested_includes_and_keeps_names():
    from django.urls import include

    entry = path("more/", include([path("deep", plain_view, name="deep")]))
    guarded = guard_entry(entry, gate_class("node"))
    (inner,) = guarded.url_patterns
    assert inner.name == "deep"
    refused = inner.callback(RequestFactory().get("/plugins/x/more/deep", REMOTE_ADDR="198.51.100.7"))
    assert refused.status_code == 403


def test_a_guarded_drf_view_is_introspected_with_the_roles_checks():
    from node.acl import AllowedCaller

    guarded = node_guarded(OpenView.as_view())
    assert guarded.cls.permission_classes == [AllowedCaller]
    assert guarded.cls.__name__ == "OpenView" and issubclass(guarded.cls, OpenView)
    assert guarded.csrf_exempt is True


@pytest.mark.django_db
def test_a_collector_plugin_view_needs_a_valid_key():
    view = guard(OpenView.as_view(), gate_class("collector"))
    missing = view(RequestFactory().get("/plugins/x/"))
    assert missing.status_code == 401
    assert "error" in body(missing)
    unknown = view(RequestFactory().get("/plugins/x/", HTTP_AUTHORIZATION="Api-Key not-a-key"))
    assert unknown.status_code == 401
