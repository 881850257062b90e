"""API tokens: named, expiring, revocable (one, all, the one in use), revoked with a password
change, last use shown; the image URLs of the API open with a token under the same check."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from annotate.queue.services.leases import assignment_get
from annotate.queue.services.pool import tasks_open
from datasets.accounts import services
from datasets.ingest.services.uploads import caption_create
from datasets.models import ApiToken
from tests import factories

pytestmark = pytest.mark.django_db


def _token(client, username="manager", **extra):
    response = client.post(
        reverse("api-token"),
        {"username": username, "password": factories.PASSWORD, **extra},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def _auth(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Token {token}"}


def test_named_token_works_lists_and_revokes_itself(client, project, manager):
    body = _token(client, name="labelling script", days=7)
    assert body["name"] == "labelling script" and body["token"].startswith("concord_")
    expiry = timezone.datetime.fromisoformat(body["expiry"])
    assert timedelta(days=6, hours=23) < expiry - timezone.now() <= timedelta(days=7)
    # Only a digest is stored.
    assert not ApiToken.objects.filter(digest=body["token"]).exists()
    projects = client.get(reverse("api-projects"), **_auth(body["token"]))
    assert projects.status_code == 200
    listing = client.get(reverse("api-tokens"), **_auth(body["token"])).json()
    assert [t["name"] for t in listing] == ["labelling script"]
    assert listing[0]["last_used_at"] is not None
    # Logging out of the API: DELETE the token in use.
    assert client.delete(reverse("api-token"), **_auth(body["token"])).status_code == 204
    again = client.get(reverse("api-projects"), **_auth(body["token"]))
    assert again.status_code == 401 and again.json()["detail"]


def test_revoke_one_by_id_and_not_someone_elses(client, project, manager, annotator):
    mine = _token(client, name="one")
    other = _token(client, name="two")
    theirs = _token(client, username="annotator", name="theirs")
    url = reverse("api-token-detail", args=[theirs["id"]])
    assert client.delete(url, **_auth(mine["token"])).status_code == 404
    assert (
        client.delete(
            reverse("api-token-detail", args=[other["id"]]), **_auth(mine["token"])
        ).status_code
        == 204
    )
    assert client.get(reverse("api-projects"), **_auth(other["token"])).status_code == 401
    assert client.get(reverse("api-projects"), **_auth(theirs["token"])).status_code == 200


def test_expired_token_is_refused(client, manager):
    token, secret = services.token_create(user=manager, name="old", days=7)
    ApiToken.objects.filter(pk=token.pk).update(
        created=timezone.now() - timedelta(days=8), expiry=timezone.now() - timedelta(days=1)
    )
    assert client.get(reverse("api-projects"), **_auth(secret)).status_code == 401
    assert not ApiToken.objects.filter(pk=token.pk).exists()


def test_password_change_revokes_every_token(client, manager):
    secrets = [services.token_create(user=manager, name=f"t{i}")[1] for i in range(3)]
    client.force_login(manager)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": factories.PASSWORD,
            "new_password1": "an entirely new passphrase",
            "new_password2": "an entirely new passphrase",
        },
    )
    assert response.status_code == 302
    for secret in secrets:
        assert client.get(reverse("api-projects"), **_auth(secret)).status_code == 401
    # Any path counts (admin, shell, reset): set_password + save.
    secret = services.token_create(user=manager, name="later")[1]
    manager.refresh_from_db()
    manager.set_password("yet another passphrase")
    manager.save()
    assert client.get(reverse("api-projects"), **_auth(secret)).status_code == 401


def test_logging_in_keeps_tokens(client, manager, settings):
    """A login saves the user (last login, and the password hash when its hasher changed):
    tokens stay, only a new password revokes them."""
    secret = services.token_create(user=manager, name="kept")[1]
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",  # the MD5 hash is upgraded at login
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    old_hash = manager.password
    response = client.post(
        reverse("login"), {"username": "manager", "password": factories.PASSWORD}
    )
    assert response.status_code == 302
    manager.refresh_from_db()
    assert manager.password != old_hash
    assert client.get(reverse("api-projects"), **_auth(secret)).status_code == 200


def test_tokens_page_creates_shows_once_and_revokes(client, manager):
    client.force_login(manager)
    page = client.post(reverse("tokens"), {"name": "notebook", "days": "30"})
    assert page.status_code == 200
    secret = page.context["created"]
    assert secret in page.content.decode()
    assert "notebook" in client.get(reverse("tokens")).content.decode()
    assert secret not in client.get(reverse("tokens")).content.decode()
    token = ApiToken.objects.get(user=manager)
    assert client.get(reverse("api-projects"), **_auth(secret)).status_code == 200
    response = client.post(reverse("token-revoke", args=[token.uid]))
    assert response.status_code == 302
    assert client.get(reverse("api-projects"), **_auth(secret)).status_code == 401
    bad = client.post(reverse("tokens"), {"name": "", "days": "3"})
    assert bad.status_code == 400 and bad.context["form"].errors.keys() == {"name", "days"}


def test_old_style_header_and_bad_headers(client, manager):
    secret = services.token_create(user=manager, name="t")[1]
    assert client.get(reverse("api-projects"), **_auth(secret)).status_code == 200
    for header in ("Token", "Token a b", "Token \xe9\xff", "Token concord_nothing"):
        response = client.get(reverse("api-projects"), HTTP_AUTHORIZATION=header)
        assert response.status_code == 401, header
        assert response.json()["detail"]


def test_api_client_fetches_its_tasks_image_with_a_token(
    client, project, manager, annotator, outsider
):
    """image_url (next task) and file_url (image API) open with `Authorization: Token`, under the
    same check as the pages: members only, not after removal."""
    image = factories.image(project=project)
    tasks_open(project=project, seed=2)
    annotator_token = services.token_create(user=annotator, name="bot")[1]
    manager_token = services.token_create(user=manager, name="bot")[1]
    outsider_token = services.token_create(user=outsider, name="bot")[1]
    task = client.post(reverse("api-task-next", args=[project.slug]), **_auth(annotator_token))
    assert task.status_code == 200
    image_url = task.json()["image_url"]
    response = client.get(image_url, **_auth(annotator_token))
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content)[:3] == b"\xff\xd8\xff"
    detail = client.get(reverse("api-image", args=[project.slug, image.pk]), **_auth(manager_token))
    for key in ("file_url", "thumbnail_url"):
        assert client.get(detail.json()[key], **_auth(manager_token)).status_code == 200
    assert client.get(image_url, **_auth(outsider_token)).status_code == 404
    assert client.get(image_url, HTTP_AUTHORIZATION="Token wrong").status_code == 401
    anonymous = client.get(image_url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    project.memberships.filter(user=annotator).delete()
    assert client.get(image_url, **_auth(annotator_token)).status_code == 404


def test_an_annotator_fetches_only_the_images_of_their_own_tasks(client, project, annotator):
    """A member who is not a manager cannot walk the project's image ids: only the images of
    tasks they were handed (now or before) open, with a session or a token alike."""
    handed, other = factories.image(project=project), factories.image(project=project, seed=9)
    tasks_open(project=project, seed=2)
    lease = assignment_get(project=project, annotator=annotator, lookahead=0).current
    assert lease is not None
    mine = lease.task.image_id
    not_mine = other.pk if mine == handed.pk else handed.pk
    secret = services.token_create(user=annotator, name="bot")[1]
    for name in ("image-file", "image-thumbnail"):
        assert (
            client.get(reverse(name, args=[project.slug, mine]), **_auth(secret)).status_code == 200
        )
        refused = client.get(reverse(name, args=[project.slug, not_mine]), **_auth(secret))
        assert refused.status_code == 404
    client.force_login(annotator)
    assert client.get(reverse("image-file", args=[project.slug, not_mine])).status_code == 404
    assert client.get(reverse("image-file", args=[project.slug, mine])).status_code == 200


def test_removed_annotator_loses_work_at_once(client, project, annotator):
    image = factories.image(project=project)
    caption_create(image=image, text="A blue square under a red circle", source="api")
    tasks_open(project=project, seed=2)
    secret = services.token_create(user=annotator, name="bot")[1]
    lease = assignment_get(project=project, annotator=annotator, lookahead=0).current
    project.memberships.filter(user=annotator).delete()
    cache.clear()
    for url in (
        reverse("api-task-next", args=[project.slug]),
        reverse("api-task-heartbeat", args=[project.slug]),
        reverse("api-lease-skip", args=[lease.pk]),
    ):
        assert client.post(url, **_auth(secret)).status_code == 404, url


def test_removing_a_member_gives_back_the_tasks_they_held(
    client, project, manager, annotator, django_capture_on_commit_callbacks
):
    image = factories.image(project=project)
    caption_create(image=image, text="A blue square under a red circle", source="api")
    tasks_open(project=project, seed=2)
    lease = assignment_get(project=project, annotator=annotator, lookahead=0).current
    client.force_login(manager)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("project-member-remove", args=[project.slug, annotator.pk]))
    assert response.status_code == 302
    lease.refresh_from_db()
    lease.task.refresh_from_db()
    assert lease.state == "skipped" and lease.task.lease_count == 0
