"""A manager's power stays inside their project (QA finding 2): nobody is added to a project
without accepting an invitation, the Members page does not tell which usernames exist, and a
manager unlocks only members of their project who are not administrators."""

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from datasets.accounts import services
from datasets.accounts.forms import NOT_A_MEMBER
from datasets.accounts.selectors import locked_usernames
from datasets.models import Membership, Role
from tests import factories

pytestmark = pytest.mark.django_db


def _lock(username: str, settings) -> None:
    anonymous = Client()
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        cache.clear()
        anonymous.post(reverse("login"), {"username": username, "password": f"wrong-{attempt}"})
    assert username in locked_usernames(usernames=[username])


def test_a_manager_cannot_add_an_existing_account_by_its_username(
    client, project, manager, outsider
):
    client.force_login(manager)
    url = reverse("project-members", args=[project.slug])
    existing = client.post(url, {"username": "outsider", "role": Role.ANNOTATOR})
    missing = client.post(url, {"username": "nobody", "role": Role.ANNOTATOR})
    assert existing.status_code == missing.status_code == 400
    assert not Membership.objects.filter(project=project, user=outsider).exists()
    # The same answer whether the account exists or not: the page is no username oracle.
    assert NOT_A_MEMBER.format(username="outsider") in existing.content.decode()
    assert NOT_A_MEMBER.format(username="nobody") in missing.content.decode()
    # Nor can a staff member's account be pulled in.
    factories.user("root", is_staff=True)
    client.post(url, {"username": "root", "role": Role.MANAGER})
    assert not project.memberships.filter(user__username="root").exists()
    # The page offers no such form any more; it says how an existing account joins.
    page = client.get(url).content.decode()
    assert "Add someone who already has an account" not in page
    assert "opens the link while logged in" in page


def test_an_existing_account_joins_by_accepting_an_invitation(project, manager, outsider):
    [line] = services.invitations_create(
        project=project, lines=[(1, "Outsider's link")], role=Role.ANNOTATOR, created_by=manager
    )
    link = reverse(
        "invitation-accept", args=[services.invitation_token(invitation=line.invitation)]
    )
    person = Client()
    person.force_login(outsider)
    page = person.get(link)
    assert page.status_code == 200 and "Join as outsider" in page.content.decode()
    assert not Membership.objects.filter(project=project, user=outsider).exists()
    response = person.post(link)
    assert response.status_code == 302
    assert Membership.objects.get(project=project, user=outsider).role == Role.ANNOTATOR


@pytest.mark.parametrize(
    "flags", [{"is_staff": True}, {"is_superuser": True}, {"is_staff": True, "is_superuser": True}]
)
def test_a_manager_cannot_unlock_an_administrator(client, project, manager, settings, flags):
    admin = factories.user("root", **flags)
    factories.member(project=project, user=admin, role=Role.ANNOTATOR)
    _lock("root", settings)
    client.force_login(manager)
    page = client.get(reverse("project-members", args=[project.slug]))
    # The administrator's lockout is neither shown nor offered to lift.
    assert page.context["locked"] == set()
    assert reverse("project-member-unlock", args=[project.slug, admin.pk]) not in (
        page.content.decode()
    )
    response = client.post(reverse("project-member-unlock", args=[project.slug, admin.pk]))
    assert response.status_code == 403
    assert "root" in locked_usernames(usernames=["root"])
    # The service refuses too, whoever calls it.
    with pytest.raises(services.UnlockRefused):
        services.member_unlock(project=project, user=admin)
    # An administrator lifts it (the admin, or account_unlock).
    assert services.account_unlock(username="root")
    assert "root" not in locked_usernames(usernames=["root"])


def test_a_manager_unlocks_only_members_of_their_own_project(
    client, project, manager, annotator, settings
):
    elsewhere = factories.user("elsewhere")
    other = factories.project(manager=factories.user("other-manager"), name="Other")
    factories.member(project=other, user=elsewhere, role=Role.ANNOTATOR)
    _lock("elsewhere", settings)
    client.force_login(manager)
    response = client.post(reverse("project-member-unlock", args=[project.slug, elsewhere.pk]))
    assert response.status_code == 404
    assert "elsewhere" in locked_usernames(usernames=["elsewhere"])
    with pytest.raises(services.UnlockRefused):
        services.member_unlock(project=project, user=elsewhere)
    # A fellow manager of the project (not an administrator) is theirs to unlock.
    colleague = factories.user("colleague")
    factories.member(project=project, user=colleague, role=Role.MANAGER)
    _lock("colleague", settings)
    response = client.post(reverse("project-member-unlock", args=[project.slug, colleague.pk]))
    assert response.status_code == 302
    assert "colleague" not in locked_usernames(usernames=["colleague"])
