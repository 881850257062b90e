import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache

from tests import factories


@pytest.fixture(scope="session", autouse=True)
def plain_http():
    """The live server of the browser tests speaks plain HTTP: no redirect to HTTPS. Set for the
    whole session, before the server's middleware reads it (per test, below, for the client)."""
    from django.conf import settings

    settings.SECURE_SSL_REDIRECT = False


@pytest.fixture(autouse=True)
def media_storage(settings, tmp_path):
    """Every test writes media to its own temporary folder and serves static files unhashed."""
    media = tmp_path / "media"
    # Password hashing is deliberately slow; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = media
    # The test client and live server speak plain HTTP; everything else of DEBUG=false stays on.
    settings.SECURE_SSL_REDIRECT = False
    # Throttle counts live in the cache: each test starts with none.
    cache.clear()
    settings.STORAGES = {
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": media},
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return media


@pytest.fixture
def manager(db):
    user = factories.user("manager")
    user.user_permissions.add(
        Permission.objects.get(codename="add_project", content_type__app_label="datasets")
    )
    return user


@pytest.fixture
def annotator(db):
    return factories.user("annotator")


@pytest.fixture
def outsider(db):
    return factories.user("outsider")


@pytest.fixture
def project(manager, annotator):
    project = factories.project(manager=manager, name="Street scenes")
    factories.member(project=project, user=annotator, role="annotator")
    return project
