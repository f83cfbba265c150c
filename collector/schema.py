"""How the OpenAPI document describes the collector's authentication: API keys, and the web page's session."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "collector.auth.ApiKeyAuthentication"
    name = ["ApiKeyAuthorization", "ApiKeyHeader", "ApiKeyQuery"]

    def get_security_requirement(self, auto_schema):
        return [{name: []} for name in self.name]  # any one of the three

    def get_security_definition(self, auto_schema):
        return [
            {
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": "Authorization: Api-Key <key>",
            },
            {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            {"type": "apiKey", "in": "query", "name": "api_key", "description": "the seed's clients"},
        ]


class SessionGrantScheme(OpenApiAuthenticationExtension):
    target_class = "collector.auth.SessionGrantAuthentication"
    name = "WebPageSession"

    def get_security_definition(self, auto_schema):
        from django.conf import settings

        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "the web page's session: a Django account logged in at /ui/login, judged by its user's grant",
        }
