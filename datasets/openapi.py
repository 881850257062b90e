"""How the OpenAPI schema describes Concord's authentication (registered by DatasetsConfig)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """``Authorization: Token …``: a django-rest-knox token (datasets.access)."""

    target_class = "datasets.access.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "An API token, as `Token <token>`: create one with POST /api/v1/auth/token/ "
                "or on the Tokens page."
            ),
        }
