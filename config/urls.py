from django.contrib import admin
from django.contrib.auth.decorators import login_not_required, login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from annotate import api_urls as annotate_api_urls
from datasets import api_urls as datasets_api_urls
from datasets.accounts import apis as accounts_apis
from datasets.accounts import views as accounts

# Errors under /api/ are JSON (datasets.api); pages keep Django's.
handler400 = "datasets.api.bad_request"
handler403 = "datasets.api.permission_denied"
handler404 = "datasets.api.page_not_found"
handler500 = "datasets.api.server_error"


def _api(patterns):
    """API views authenticate themselves (session or token) and answer 401/403 as JSON, so the
    site-wide login redirect must not intercept them (DRF's views already say so; this makes it
    explicit for every view in the API, whatever its kind)."""
    for pattern in patterns:
        pattern.callback = login_not_required(pattern.callback)
    return patterns


api_v1 = _api(
    [
        path("auth/token/", accounts_apis.TokenApi.as_view(), name="api-token"),
        path("auth/tokens/", accounts_apis.TokenListApi.as_view(), name="api-tokens"),
        path(
            "auth/tokens/<uuid:token_id>/",
            accounts_apis.TokenDetailApi.as_view(),
            name="api-token-detail",
        ),
        path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
        *datasets_api_urls.urlpatterns,
        *annotate_api_urls.urlpatterns,
    ]
)

urlpatterns = [
    path("admin/", admin.site.urls),
    # Concord's own login (throttled), password change (throttled) and reset (says when no mail
    # server exists) come before Django's, which provide the rest.
    path("accounts/login/", accounts.LoginView.as_view(), name="login"),
    path("accounts/password_change/", accounts.password_change, name="password_change"),
    path("accounts/password_reset/", accounts.password_reset, name="password_reset"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include(api_v1)),
    # A page for people, so it keeps the login redirect. The split view serves its script as a
    # file, which the Content-Security-Policy allows (no inline script).
    path(
        "api/v1/docs/",
        login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("", include("annotate.urls")),
    path("", include("datasets.urls")),
    path("", include("training.registry.urls")),
    path("", include("training.negatives.urls")),
]
