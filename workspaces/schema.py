"""How the API-key authentication looks in the OpenAPI document (a drf-spectacular extension)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from workspaces import keys


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "workspaces.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": f"{keys.PREFIX}<random>",
            "description": f"A workspace API key: `Authorization: Bearer {keys.PREFIX}...`, or `{keys.TEST_PREFIX}...` "
            "for test mode (nothing sent, nothing charged). Never in the URL.",
        }
