from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from tests import factories

SCALEOUT = Path(__file__).parent / "scaleout"


def pytest_addoption(parser):
    parser.addoption(
        "--scaleout",
        action="store_true",
        help="run tests/scaleout (workers in their own folders, PostgreSQL, Redis and an S3 "
        "server); they are not collected otherwise",
    )


def pytest_ignore_collect(collection_path, config):
    # The scale-out tests need PostgreSQL and Redis, which the SQLite run of the suite lacks:
    # they run on their own (make test-scaleout), not skipped inside every run.
    if collection_path == SCALEOUT and not config.getoption("--scaleout"):
        return True
    return None


@pytest.fixture(autouse=True)
def media_storage(settings, tmp_path):
    """Every test writes media, releases, models and its scratch cache to its own temporary
    folders and serves static files unhashed."""
    media = tmp_path / "media"
    # Password hashing is deliberately slow; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = media
    settings.CONCORD_RELEASES_ROOT = tmp_path / "releases"
    settings.CONCORD_MODELS_ROOT = tmp_path / "models"
    settings.CONCORD_SCRATCH_DIR = tmp_path / "scratch"
    settings.STORAGES = {
        "default": local_storage(media),
        "releases": local_storage(settings.CONCORD_RELEASES_ROOT, overwrite=True),
        "models": local_storage(settings.CONCORD_MODELS_ROOT, overwrite=True),
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return media


def local_storage(location, *, overwrite: bool = False) -> dict:
    """A storage alias on a local folder, as the embedded default configures it."""
    return {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": location, "allow_overwrite": overwrite},
    }


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
