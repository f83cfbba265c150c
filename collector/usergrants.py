"""What a web page user may query: a grant of the same shape as an API key's, kept per Django account."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

# Imported by collector.models once NodeGrants and Node are defined there.
from collector.models import NodeGrants


class UserGrant(NodeGrants, models.Model):
    """The nodes a Django account may query through the web page: admin, all nodes, or some nodes.

    An account without one may log in to the page but query no node; a superuser has the admin
    grant whatever its row says, as Django's superusers have every permission.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="par_grant")
    admin = models.BooleanField(default=False, help_text="Every node, and the list of keys.")
    all_nodes = models.BooleanField(default=False, help_text="Every node, present and future.")
    nodes = models.ManyToManyField(
        "collector.Node", blank=True, related_name="user_grants", help_text="Nodes granted."
    )

    class Meta:
        app_label = "collector"
        ordering = ["user__username"]
        verbose_name = "user's grant"
        verbose_name_plural = "users' grants"

    def __str__(self) -> str:
        return str(self.user)

    # Who the grant is, in the answers' words ("this account may query no active node").
    who = "this account"

    @classmethod
    def of(cls, user: Any) -> UserGrant:
        """The grant of a logged-in account; a new one granting nothing if it has none yet."""
        grant, _ = cls.objects.get_or_create(user=user)
        if user.is_superuser:
            grant.admin = True  # in effect only: the row keeps what was granted
        return grant

    @property
    def holder(self) -> str:
        return f"user:{self.user_id}"

    @property
    def rate_id(self) -> int:
        """The user's id negated: counted in the same table as the keys' ids, never as one of them."""
        return -self.user_id

    @property
    def prefix(self) -> str:
        """No key prefix: the request log names the user instead."""
        return ""

    def log_identity(self) -> tuple[str, Any]:
        return "", self.user
