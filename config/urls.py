from django.contrib import admin
from django.contrib.auth.decorators import login_not_required, login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token

from annotate import api_urls as annotate_api_urls
from datasets import api_urls as datasets_api_urls


def _api(patterns):
    """API views authenticate themselves (session or token) and answer 401/403 as JSON, so the
    site-wide login redirect must not intercept them (DRF's views already say so; this makes it
    explicit for every view in the API, whatever its kind)."""
    for pattern in patterns:
        pattern.callback = login_not_required(pattern.callback)
    return patterns


api_v1 = _api(
    [
        path("auth/token/", obtain_auth_token, name="api-token"),
        path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
        *datasets_api_urls.urlpatterns,
        *annotate_api_urls.urlpatterns,
    ]
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include(api_v1)),
    # A page for people, so it keeps the login redirect.
    path(
        "api/v1/docs/",
        login_required(SpectacularSwaggerView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("", include("annotate.urls")),
    path("", include("datasets.urls")),
    path("", include("training.registry.urls")),
    path("", include("training.negatives.urls")),
]
