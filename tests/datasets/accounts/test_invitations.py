"""Onboarding from the Members page: invitations (one or a list), single use, expiring,
revocable, mailed when mail is configured; accepting one makes the account and the membership."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from datasets.accounts import services
from datasets.models import Invitation, Membership
from tests import factories

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a long enough passphrase 7"


def _invite(client, project, people, role="annotator"):
    return client.post(
        reverse("invitations-create", args=[project.slug]), {"people": people, "role": role}
    )


def _link(invitation) -> str:
    return reverse("invitation-accept", args=[services.invitation_token(invitation=invitation)])


def _accept(client, invitation, username="newcomer", password=NEW_PASSWORD):
    return client.post(
        _link(invitation), {"username": username, "password1": password, "password2": password}
    )


def test_bulk_invitations_give_each_line_one_outcome(client, project, manager):
    client.force_login(manager)
    people = "\n".join(
        [
            "ada@example.org",
            "Grace (night shift)",
            "not-an-email@",
            "",
            "ada@example.org",
            "x" * 300,
            "linus@example.org",
        ]
    )
    response = _invite(client, project, people)
    assert response.status_code == 302
    created = Invitation.objects.filter(project=project).order_by("id")
    assert [(i.email, i.note) for i in created] == [
        ("ada@example.org", ""),
        ("", "Grace (night shift)"),
        ("linus@example.org", ""),
    ]
    page = client.get(reverse("project-members", args=[project.slug]))
    text = page.content.decode()
    assert "Line 3 (not-an-email@): not a valid email address" in text
    assert "Line 5 (ada@example.org): repeated above" in text
    assert "Line 6" in text and "longer than 200 characters" in text
    assert "3 invitations created" in text
    links = [link for _, link in page.context["invitations"]]
    assert len(links) == 3 and all(
        link.startswith("http://testserver/accounts/invitations/") for link in links
    )
    for link in links:
        assert link in text


def test_accepting_makes_an_account_joins_and_lands_on_the_annotate_page(project, manager):
    [line] = services.invitations_create(
        project=project, lines=[(1, "new@example.org")], role="annotator", created_by=manager
    )
    visitor = Client()
    page = visitor.get(_link(line.invitation))
    assert page.status_code == 200 and "Join Street scenes" in page.content.decode()
    response = _accept(visitor, line.invitation)
    assert response.status_code == 302
    assert response["Location"] == reverse("annotate", args=[project.slug])
    user = get_user_model().objects.get(username="newcomer")
    assert user.email == "new@example.org" and user.check_password(NEW_PASSWORD)
    assert Membership.objects.get(project=project, user=user).role == "annotator"
    assert visitor.get(response["Location"]).status_code == 200
    # Single use.
    again = Client().get(_link(line.invitation))
    assert again.status_code == 410 and "already been used" in again.content.decode()


def test_manager_invitation_lands_on_the_project(project, manager):
    [line] = services.invitations_create(
        project=project, lines=[(1, "Co-manager")], role="manager", created_by=manager
    )
    response = _accept(Client(), line.invitation, username="comanager")
    assert response["Location"] == reverse("project-detail", args=[project.slug])
    assert Membership.objects.get(user__username="comanager").role == "manager"


def test_weak_passwords_and_taken_usernames_are_refused(project, manager, annotator):
    [line] = services.invitations_create(
        project=project, lines=[(1, "x@example.org")], role="annotator", created_by=manager
    )
    visitor = Client()
    weak = _accept(visitor, line.invitation, password="short")
    assert weak.status_code == 400 and weak.context["form"].errors["password2"]
    taken = _accept(visitor, line.invitation, username="annotator")
    assert taken.status_code == 400 and taken.context["form"].errors["username"]
    nul = _accept(visitor, line.invitation, username="bad\x00name")
    assert nul.status_code == 400
    line.invitation.refresh_from_db()
    assert line.invitation.accepted_at is None


def test_a_signed_in_person_joins_with_their_account(client, project, manager, outsider):
    [line] = services.invitations_create(
        project=project, lines=[(1, "outsider")], role="annotator", created_by=manager
    )
    client.force_login(outsider)
    assert "Join as outsider" in client.get(_link(line.invitation)).content.decode()
    response = client.post(_link(line.invitation))
    assert response.status_code == 302
    assert Membership.objects.get(project=project, user=outsider).role == "annotator"


def test_a_manager_accepting_an_annotator_invitation_stays_manager(client, project, manager):
    [line] = services.invitations_create(
        project=project, lines=[(1, "me")], role="annotator", created_by=manager
    )
    client.force_login(manager)
    client.post(_link(line.invitation))
    assert Membership.objects.get(project=project, user=manager).role == "manager"


def test_revoked_expired_and_forged_links_are_refused(client, project, manager):
    lines = services.invitations_create(
        project=project,
        lines=[(1, "a@example.org"), (2, "b@example.org")],
        role="annotator",
        created_by=manager,
    )
    revoked, expired = (line.invitation for line in lines)
    client.force_login(manager)
    response = client.post(reverse("invitation-revoke", args=[project.slug, revoked.pk]))
    assert response.status_code == 302
    members = client.get(reverse("project-members", args=[project.slug]))
    assert [i.pk for i, _ in members.context["invitations"]] == [expired.pk]
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(1))
    visitor = Client()
    assert "withdrawn" in visitor.get(_link(revoked)).content.decode()
    assert _accept(visitor, revoked).status_code == 410
    assert "expired" in visitor.get(_link(expired)).content.decode()
    assert _accept(visitor, expired).status_code == 410
    forged = _link(revoked)[:-3] + "abc/"
    assert visitor.get(forged).status_code == 404
    assert visitor.get("/accounts/invitations/1/").status_code == 404
    assert not get_user_model().objects.filter(username="newcomer").exists()


def test_inviting_an_address_again_replaces_the_open_invitation(project, manager):
    first = services.invitations_create(
        project=project, lines=[(1, "ada@example.org")], role="annotator", created_by=manager
    )[0].invitation
    second = services.invitations_create(
        project=project, lines=[(1, "ADA@example.org")], role="manager", created_by=manager
    )[0]
    assert second.replaced
    first.refresh_from_db()
    assert first.revoked_at is not None
    assert Client().get(_link(first)).status_code == 410


def test_invitations_are_mailed_when_mail_is_configured(
    client, project, manager, settings, mailoutbox
):
    settings.CONCORD_MAIL_CONFIGURED = True
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    client.force_login(manager)
    _invite(client, project, "ada@example.org\nNo address")
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["ada@example.org"]
    invitation = Invitation.objects.get(email="ada@example.org")
    assert _link(invitation) in mailoutbox[0].body


def test_invite_form_refuses_an_empty_list(client, project, manager):
    client.force_login(manager)
    response = _invite(client, project, "  \n ")
    assert response.status_code == 400
    assert response.context["invite_form"].errors["people"]
    assert not Invitation.objects.exists()


def test_annotators_cannot_invite(client, project, annotator):
    client.force_login(annotator)
    assert _invite(client, project, "a@example.org").status_code == 403
    assert not Invitation.objects.exists()


# --- One account per person (QA finding 12) --------------------------------------------------


def test_an_address_invited_twice_gets_one_account(project, manager):
    """Two projects invite the same address; the first link makes the account, the second
    cannot make another one: the person logs in and joins with theirs."""
    other = factories.project(manager=manager, name="Other")
    [first] = services.invitations_create(
        project=project, lines=[(1, "ada@example.org")], role="annotator", created_by=manager
    )
    [second] = services.invitations_create(
        project=other, lines=[(1, "ADA@example.org")], role="annotator", created_by=manager
    )
    assert _accept(Client(), first.invitation, username="ada").status_code == 302
    refused = _accept(Client(), second.invitation, username="ada2")
    assert refused.status_code == 400
    assert "already exists" in refused.content.decode()
    assert get_user_model().objects.filter(email__iexact="ada@example.org").count() == 1
    second.invitation.refresh_from_db()
    assert second.invitation.accepted_at is None
    ada = Client()
    ada.force_login(get_user_model().objects.get(username="ada"))
    assert ada.post(_link(second.invitation)).status_code == 302
    assert Membership.objects.filter(user__username="ada").count() == 2


@pytest.mark.parametrize("name", ["CONCORD_INVITATION_DAYS", "CONCORD_TOKEN_DAYS"])
@pytest.mark.parametrize("days", ["0", "-1", "100000"])
def test_lifetimes_that_expire_at_birth_are_refused_at_start(name, days):
    import os
    import subprocess
    import sys

    from django.conf import settings

    env = {**os.environ, "SECRET_KEY": "x", name: days}
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert f"{name} is a number of days from 1 to 3650" in result.stderr
