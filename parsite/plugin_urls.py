"""Mount each registered plugin's URL patterns under ``/plugins/<id>/``, behind the role's own checks.

Every view a plugin mounts is wrapped in a gate that runs, before the view,
the authentication, permission and throttle classes of the role's base view
(``NodeView`` on a node: the address ACL and node secret; ``CollectorView`` on
a collector: a valid API key). A plugin cannot opt out of them, whatever its
views declare, and DRF views and plain Django views are guarded alike.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern, URLResolver, include, path
from django.utils.module_loading import import_string
from rest_framework.views import APIView

from api.plugins import PluginConfig, registry

# The view every route of a role derives from: its checks are the plugins' checks.
ROLE_BASE_VIEWS = {
    "node": "node.views.NodeView",
    "collector": "collector.views.CollectorView",
}


def plugin_urlpatterns(role: str | None = None) -> list[URLResolver]:
    """``plugins/<id>/`` + the plugin's urlpatterns, for every plugin of this role that has any."""
    mounted = []
    for plugin in registry():
        patterns = plugin_patterns(plugin)
        if patterns is not None:
            gate = gate_class(role or settings.PAR_ROLE)
            guarded = [guard_entry(entry, gate) for entry in patterns]
            mounted.append(path(f"plugins/{plugin.label}/", include((guarded, plugin.label))))
    return mounted


def plugin_patterns(plugin: PluginConfig) -> list | None:
    """The ``urlpatterns`` of the plugin's ``urls`` module, or None when it has none."""
    dotted = f"{plugin.name}.{plugin.urls}"
    if not _module_exists(dotted):
        return None
    module = importlib.import_module(dotted)
    patterns = getattr(module, "urlpatterns", None)
    if not isinstance(patterns, list | tuple):
        raise ImproperlyConfigured(f"plugin {plugin.label!r}: {dotted} must define a urlpatterns list")
    return list(patterns)


def _module_exists(dotted: str) -> bool:
    parent, _, _ = dotted.rpartition(".")
    try:
        # find_spec imports the parents; a missing parent means no such module.
        return importlib.util.find_spec(dotted) is not None
    except ModuleNotFoundError as exc:
        if exc.name and parent.startswith(exc.name):
            return False
        raise


class _Gate:
    """Mixed before a role's base view: never refuses a media type, the plugin's view negotiates its own."""

    def perform_content_negotiation(self, request, force=False):
        return super().perform_content_negotiation(request, force=True)


@functools.cache
def gate_class(role: str) -> type[APIView]:
    base = import_string(ROLE_BASE_VIEWS[role])
    return type(f"{base.__name__}PluginGate", (_Gate, base), {})


def guard_entry(entry: URLPattern | URLResolver, gate: type[APIView]) -> URLPattern | URLResolver:
    """The same route, its view(s) wrapped in ``gate``; nested includes are walked."""
    if isinstance(entry, URLResolver):
        nested = [guard_entry(child, gate) for child in entry.url_patterns]
        return URLResolver(entry.pattern, nested, entry.default_kwargs, entry.app_name, entry.namespace)
    return URLPattern(entry.pattern, guard(entry.callback, gate), entry.default_args, entry.name)


def guard(view: Callable, gate: type[APIView]) -> Callable:
    """``view`` behind the role's authentication, permissions and throttles."""

    @functools.wraps(view)  # keeps .cls/.view_class/csrf_exempt for routes, schema and CSRF
    def guarded(request, *args, **kwargs):
        refusal = refuse(gate, request, args, kwargs)
        if refusal is not None:
            return refusal
        return view(request, *args, **kwargs)

    cls = getattr(view, "cls", None)
    if isinstance(cls, type) and issubclass(cls, APIView):
        # What /schema and /routes introspect: the plugin's view as the gate makes it behave.
        gated = type(
            cls.__name__,
            (cls,),
            {
                "__module__": cls.__module__,
                "__doc__": cls.__doc__,
                "authentication_classes": gate.authentication_classes,
                "permission_classes": gate.permission_classes,
                "query_params": (*getattr(gate, "query_params", ()), *getattr(cls, "query_params", ())),
            },
        )
        # Attributes DRF and Django set on view functions; a plain function's type has none.
        guarded.cls = guarded.view_class = gated  # type: ignore[attr-defined]
    return guarded


def refuse(gate: type[APIView], request, args: tuple, kwargs: dict):
    """The role's error response when the gate refuses ``request``; None when it lets it through."""
    view = gate()
    view.args, view.kwargs = args, kwargs
    drf_request = view.initialize_request(request, *args, **kwargs)
    view.request = drf_request
    view.headers = view.default_response_headers
    try:
        view.initial(drf_request, *args, **kwargs)
    except Exception as exc:
        response = view.handle_exception(exc)  # re-raises what is not an API error
        return view.finalize_response(drf_request, response, *args, **kwargs)
    # What the role's authentication found (e.g. the collector's API key), for the plugin's view.
    request.par_auth = drf_request.auth
    return None
