"""Django admin: keys (shown once at creation), nodes and grants, and the read-only request log."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from collector.exports import request_log_csv
from collector.models import ApiKey, Node, NodeGrants, RequestLog, UserGrant


def granted_nodes(grant: NodeGrants) -> str:
    """A key's or a user's grant in a list column."""
    if grant.admin:
        return "all (admin)"
    if grant.all_nodes:
        return "all"
    return ", ".join(str(node.id) for node in grant.nodes.all()) or "—"


def grants_nothing(grant: NodeGrants | None) -> bool:
    return grant is None or not (grant.admin or grant.all_nodes or grant.nodes.exists())


def warn_no_grant(request, what: str) -> None:
    """Say, after a save, that ``what`` may query no node (the save itself stands)."""
    messages.warning(
        request, format_html("{} may query no node yet: grant it admin, every node or some nodes.", what)
    )


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "address", "scheme", "active")
    list_filter = ("active", "scheme")
    search_fields = ("id", "name", "address")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "prefix",
        "name",
        "owner",
        "admin",
        "all_nodes",
        "granted",
        "active",
        "created",
        "last_used",
    )
    list_filter = ("active", "admin", "all_nodes", "nodes")
    search_fields = ("name", "owner", "prefix")
    fields = (
        "name",
        "owner",
        "prefix",
        "admin",
        "all_nodes",
        "nodes",
        "active",
        "expires",
        "created",
        "last_used",
    )
    readonly_fields = ("prefix", "created", "last_used")
    filter_horizontal = ("nodes",)
    actions = ("revoke",)

    @admin.display(description="nodes")
    def granted(self, obj: ApiKey) -> str:
        return granted_nodes(obj)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("nodes")

    def save_model(self, request, obj: ApiKey, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # Kept on the request only, to show it on the next page; never stored.
        request.par_new_key = obj.save_with_new_key()

    def save_related(self, request, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)  # the nodes are saved here
        if grants_nothing(form.instance):
            warn_no_grant(request, f"The API key {form.instance.name!r}")

    def response_add(self, request, obj: ApiKey, post_url_continue=None):
        new_key = getattr(request, "par_new_key", None)
        if new_key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "apikey": obj, "key": new_key}
        response = TemplateResponse(request, "admin/collector/apikey/created.html", context)
        response["Cache-Control"] = "no-store"  # the key must not linger in a cache
        return response

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset) -> None:
        count = queryset.update(active=False)
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)


@admin.register(UserGrant)
class UserGrantAdmin(admin.ModelAdmin):
    """What each Django account may query through the web page, in the shape of a key's grants."""

    list_display = ("user", "admin", "all_nodes", "granted")
    list_filter = ("admin", "all_nodes", "nodes")
    search_fields = ("user__username", "user__email")
    fields = ("user", "admin", "all_nodes", "nodes")
    autocomplete_fields = ("user",)
    filter_horizontal = ("nodes",)

    @admin.display(description="nodes")
    def granted(self, obj: UserGrant) -> str:
        return granted_nodes(obj)

    def save_related(self, request, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        grant = form.instance
        if grants_nothing(grant) and not grant.user.is_superuser:
            warn_no_grant(request, f"The user {grant.user.get_username()!r}")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user").prefetch_related("nodes")


class UserWithGrantAdmin(UserAdmin):
    """Django's user admin, which says when a saved account may query no node on the web page."""

    def save_related(self, request, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        user = form.instance
        if user.is_superuser or not grants_nothing(UserGrant.objects.filter(user=user).first()):
            return
        add = reverse("admin:collector_usergrant_add")
        messages.warning(
            request,
            format_html(
                'The user {} may query no node on the web page yet: <a href="{}">grant it nodes</a>'
                " (or manage.py grantnodes {} --nodes 1,2).",
                user.get_username(),
                add,
                user.get_username(),
            ),
        )


if admin.site.is_registered(get_user_model()):
    admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), UserWithGrantAdmin)


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    """Who pulled which packets from which nodes, and how each node answered: browse, never edit."""

    list_display = (
        "time",
        "view",
        "method",
        "key_prefix",
        "user",
        "nodes",
        "flow",
        "start",
        "end",
        "status",
        "bytes_sent",
        "duration",
        "client_ip",
        "error",
    )
    list_filter = ("status", "view", "method", "node")
    search_fields = ("key_prefix", "user__username", "nodes", "src_addr", "dst_addr", "client_ip", "query")
    date_hierarchy = "time"
    readonly_fields = ("answers",)
    actions = ("export_csv",)

    @admin.display(description="how each node answered")
    def answers(self, obj: RequestLog) -> str:
        return obj.node_summary() or "—"

    @admin.action(description="Export the selected entries as CSV")
    def export_csv(self, request, queryset):
        return request_log_csv(queryset)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
