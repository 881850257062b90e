from django.contrib import admin
from django.contrib.auth.decorators import login_not_required, login_required
from django.urls import URLResolver, include, path
from django.urls.converters import IntConverter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from annotate import api_urls as annotate_api_urls
from datasets import api_urls as datasets_api_urls
from datasets.accounts import apis as accounts_apis
from datasets.accounts import views as accounts
from datasets.api import ID_MAX

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


class IdConverter(IntConverter):
    """``<int:…>`` within a signed 64-bit integer, the range of every id and number a path
    names. Past it the path matches nothing (404), rather than reaching a query: SQLite raises
    OverflowError for such a value in a lookup Django does not range-check itself (a foreign
    key's, e.g. ``user_id``), a 500."""

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > ID_MAX:
            raise ValueError(f"{value} is past a 64-bit integer")
        return number


def _bounded_ints(patterns) -> list:
    """Every ``<int:…>`` of these patterns (and the ones they include) an IdConverter.

    Done to the built patterns, so that every URL table of every stage gets it without naming
    a converter of its own (Django 5.1 deprecated replacing the built-in "int" converter).
    """
    for entry in patterns:
        pattern = entry.pattern
        for name, converter in list(getattr(pattern, "converters", {}).items()):
            if type(converter) is IntConverter:
                pattern.converters[name] = IdConverter()
        if isinstance(entry, URLResolver):
            _bounded_ints(entry.url_patterns)
    return patterns


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
_bounded_ints(urlpatterns)
