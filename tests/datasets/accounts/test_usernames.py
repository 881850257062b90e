"""One person, one name (QA finding 15): logins and lockouts compare usernames by their key
(NFKC, case-folded), new accounts cannot take a case variant of an existing name or mix
look-alike letters of two scripts."""

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from datasets.access import username_key
from datasets.accounts import services
from datasets.accounts.forms import USERNAME_CONFUSABLE
from datasets.accounts.selectors import locked_usernames
from tests import factories

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a long enough passphrase 7"


def test_username_key():
    assert username_key("Alice") == username_key("ALICE") == "alice"
    assert username_key("Straße") == username_key("STRASSE")
    assert username_key("ａｌｉｃｅ") == "alice"  # full-width
    assert username_key("аlice") != "alice"  # a Cyrillic а is another letter


@pytest.mark.parametrize("typed", ["annotator", "Annotator", "ANNOTATOR", "ａｎｎｏｔａｔｏｒ"])
def test_login_whatever_the_case(annotator, typed):
    page = Client().post(reverse("login"), {"username": typed, "password": factories.PASSWORD})
    assert page.status_code == 302
    token = Client().post(
        reverse("api-token"),
        {"username": typed, "password": factories.PASSWORD},
        content_type="application/json",
    )
    assert token.status_code == 201


def test_case_variants_share_one_lockout(client, project, manager, annotator, settings):
    variants = ["annotator", "Annotator", "ANNOTATOR", "aNNotator", "annotatoR"]
    for attempt, typed in enumerate(variants[: settings.AXES_FAILURE_LIMIT]):
        cache.clear()
        Client().post(reverse("login"), {"username": typed, "password": f"wrong-{attempt}"})
    for typed in ("annotator", "Annotator", "ANNOTATOR"):
        cache.clear()
        response = Client().post(
            reverse("login"), {"username": typed, "password": factories.PASSWORD}
        )
        assert response.status_code == 429, typed
    # The Members page sees the lockout, and unlocking lifts it for every spelling.
    assert locked_usernames(usernames=["annotator"]) == {"annotator"}
    client.force_login(manager)
    response = client.post(reverse("project-member-unlock", args=[project.slug, annotator.pk]))
    assert response.status_code == 302
    cache.clear()
    response = Client().post(
        reverse("login"), {"username": "ANNOTATOR", "password": factories.PASSWORD}
    )
    assert response.status_code == 302


def _accept(project, manager, username):
    [line] = services.invitations_create(
        project=project, lines=[(1, "someone")], role="annotator", created_by=manager
    )
    link = reverse(
        "invitation-accept", args=[services.invitation_token(invitation=line.invitation)]
    )
    return Client().post(
        link, {"username": username, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )


@pytest.mark.parametrize("username", ["Annotator", "ANNOTATOR", "ａｎｎｏｔａｔｏｒ"])
def test_a_new_account_cannot_take_a_variant_of_a_name(project, manager, annotator, username):
    response = _accept(project, manager, username)
    assert response.status_code == 400
    assert response.context["form"].errors["username"]


def test_a_variant_that_only_casefolding_finds_is_refused(project, manager):
    factories.user("Straße")
    response = _accept(project, manager, "STRASSE")
    assert response.status_code == 400 and response.context["form"].errors["username"]


@pytest.mark.parametrize("username", ["аdmin", "раураl", "adminΟ"])
def test_look_alike_letters_of_two_scripts_are_refused(project, manager, username):
    response = _accept(project, manager, username)
    assert response.status_code == 400
    assert response.context["form"].errors["username"] == [USERNAME_CONFUSABLE]


@pytest.mark.parametrize("username", ["田中さん", "Ольга", "Émile", "ana.maria-2"])
def test_names_in_any_one_script_are_welcome(project, manager, username):
    response = _accept(project, manager, username)
    assert response.status_code == 302, response.context["form"].errors
