"""Every page and endpoint, for every kind of user: the status each must get."""

import pytest
from django.urls import reverse

from tests import factories

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "outsider", "other_manager", "annotator", "manager", "staff")

LOGIN = "login"  # a redirect to the login page

# name -> (method, url name, needs image id), and expected status per role.
MATRIX = {
    "home": ("get", "home", False, (LOGIN, 200, 200, 200, 200, 200)),
    "project create": ("get", "project-create", False, (LOGIN, 403, 200, 403, 200, 200)),
    "project detail": ("get", "project-detail", False, (LOGIN, 404, 404, 200, 200, 200)),
    "settings": ("get", "project-settings", False, (LOGIN, 404, 404, 403, 200, 200)),
    "members": ("get", "project-members", False, (LOGIN, 404, 404, 403, 200, 200)),
    "upload page": ("get", "project-upload", False, (LOGIN, 404, 404, 403, 200, 200)),
    "upload post": ("post", "project-upload", False, (LOGIN, 404, 404, 403, 200, 200)),
    "image grid": ("get", "image-grid", False, (LOGIN, 404, 404, 403, 200, 200)),
    "image detail": ("get", "image-detail", True, (LOGIN, 404, 404, 403, 200, 200)),
    # An annotator fetches only the images of their own tasks (none in this world).
    "image file": ("get", "image-file", True, (LOGIN, 404, 404, 404, 200, 200)),
    "thumbnail": ("get", "image-thumbnail", True, (LOGIN, 404, 404, 404, 200, 200)),
    "member remove": (
        "post",
        "project-member-remove",
        False,
        (LOGIN, 404, 404, 403, 302, 302),
    ),
    "admin": ("get", "admin:index", False, (302, 302, 302, 302, 302, 200)),
    "api docs": ("get", "api-docs", False, (LOGIN, 200, 200, 200, 200, 200)),
    "api schema": ("get", "api-schema", False, (401, 200, 200, 200, 200, 200)),
    "api projects": ("get", "api-projects", False, (401, 200, 200, 200, 200, 200)),
    "api projects create": ("post", "api-projects", False, (401, 403, 400, 403, 400, 400)),
    "api project": ("get", "api-project", False, (401, 404, 404, 200, 200, 200)),
    "api project patch": ("patch", "api-project", False, (401, 404, 404, 403, 200, 200)),
    "api images": ("get", "api-images", False, (401, 404, 404, 403, 200, 200)),
    "api images upload": ("post", "api-images", False, (401, 404, 404, 403, 400, 400)),
    "api image": ("get", "api-image", True, (401, 404, 404, 403, 200, 200)),
    "api captions": ("get", "api-captions", False, (401, 404, 404, 403, 200, 200)),
    "api captions create": ("post", "api-captions", False, (401, 404, 404, 403, 400, 400)),
    "annotate page": ("get", "annotate", False, (LOGIN, 404, 404, 200, 200, 200)),
    "annotate undo": ("post", "annotate-undo", False, (LOGIN, 404, 404, 200, 200, 200)),
    "annotate heartbeat": ("post", "annotate-heartbeat", False, (LOGIN, 404, 404, 204, 204, 204)),
    "open tasks": ("post", "tasks-open", False, (LOGIN, 404, 404, 403, 302, 302)),
    "negatives page": ("get", "negatives", False, (LOGIN, 404, 404, 403, 200, 200)),
    "mine negatives": ("post", "negatives", False, (LOGIN, 404, 404, 403, 302, 302)),
    "api task next": ("post", "api-task-next", False, (401, 404, 404, 204, 204, 204)),
    "api heartbeat": ("post", "api-task-heartbeat", False, (401, 404, 404, 200, 200, 200)),
}


@pytest.fixture
def world(project, manager, annotator, outsider):
    other_manager = factories.user("other-manager")
    other_manager.user_permissions.add(*manager.user_permissions.all())
    factories.project(manager=other_manager, name="Someone else's")
    staff = factories.user("admin", is_staff=True, is_superuser=True)
    factories.member(project=project, user=factories.user("second-manager"), role="manager")
    return {
        "project": project,
        "image": factories.image(project=project),
        "users": {
            "anonymous": None,
            "outsider": outsider,
            "other_manager": other_manager,
            "annotator": annotator,
            "manager": manager,
            "staff": staff,
        },
        "removable": annotator,
    }


def _url(world, url_name: str, needs_image: bool) -> str:
    if url_name in (
        "home",
        "project-create",
        "admin:index",
        "api-docs",
        "api-schema",
        "api-projects",
    ):
        return reverse(url_name)
    kwargs = {"slug": world["project"].slug}
    if needs_image:
        kwargs["image_id"] = world["image"].pk
    if url_name == "project-member-remove":
        victim = factories.user(f"victim-{world['project'].memberships.count()}")
        world["project"].memberships.create(user=victim, role="annotator")
        kwargs["user_id"] = victim.pk
    return reverse(url_name, kwargs=kwargs)


@pytest.mark.parametrize("role", ROLES)
def test_access_matrix(client, world, role):
    """One test per role walking every case: each mismatch is listed, not just the first."""
    user = world["users"][role]
    if user is not None:
        client.force_login(user)
    mismatches = []
    for case in sorted(MATRIX):
        method, url_name, needs_image, expected_by_role = MATRIX[case]
        expected = expected_by_role[ROLES.index(role)]
        url = _url(world, url_name, needs_image)
        if method == "patch":
            response = client.patch(url, data={}, content_type="application/json")
        else:
            response = getattr(client, method)(url)
        if expected == LOGIN:
            ok = response.status_code == 302 and response["Location"].startswith(reverse("login"))
        else:
            ok = response.status_code == expected
        if not ok:
            mismatches.append(f"{case}: expected {expected}, got {response.status_code}")
    assert not mismatches, mismatches


def test_image_ids_from_another_project_are_not_reachable(client, world, manager):
    """A manager of one project guessing an image id of another project gets 404 everywhere."""
    mine = factories.project(manager=manager, name="Mine")
    foreign_image = world["image"]
    world["project"].memberships.filter(user=manager).delete()
    client.force_login(manager)
    for name in ("image-detail", "image-file", "image-thumbnail", "api-image"):
        url = reverse(name, kwargs={"slug": mine.slug, "image_id": foreign_image.pk})
        assert client.get(url).status_code == 404, name
    response = client.post(
        reverse("api-captions", kwargs={"slug": mine.slug}),
        {"image": foreign_image.pk, "text": "sneaky"},
    )
    assert response.status_code == 400
    assert foreign_image.captions.count() == 0


def test_token_authentication(client, world, manager):
    response = client.post(
        reverse("api-token"), {"username": "manager", "password": factories.PASSWORD}
    )
    token = response.json()["token"]
    api = reverse("api-images", kwargs={"slug": world["project"].slug})
    assert client.get(api, HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    assert client.get(api, HTTP_AUTHORIZATION="Token wrong").status_code == 401
