"""Views of the test plugin: a DRF view that declares no checks of its own, and a plain Django view."""

from __future__ import annotations

from django.http import JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from api.plugins import plugin_setting


class EchoView(APIView):
    # Declares itself open: the role's checks must still apply.
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses=OpenApiTypes.OBJECT, summary="Test plugin: the greeting setting and who asked")
    def get(self, request):
        return Response(
            {
                "greeting": plugin_setting("par_test_plugin", "greeting"),
                "caller": type(request.par_auth).__name__ if request.par_auth is not None else None,
            }
        )

    @extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT, summary="Test plugin: echo")
    def post(self, request):
        return Response({"echo": request.data})


class ItemView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT, summary="Test plugin: a path parameter")
    def get(self, request, number: int):
        return Response({"number": number})


def plain(request):
    """A plain Django view: guarded like the DRF ones."""
    return JsonResponse({"plain": True})
