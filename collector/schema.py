"""How the OpenAPI document describes the collector's API-key authentication."""

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
