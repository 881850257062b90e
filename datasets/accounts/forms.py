"""Forms of the account pages: invitations, accepting one, API tokens."""

from confusable_homoglyphs import confusables
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

from datasets.access import users_named
from datasets.accounts.services import (
    MAX_INVITATIONS_AT_ONCE,
    TOKEN_LIFETIMES_DAYS,
    TOKEN_NAME_MAX,
    TOO_MANY_LINES,
    USERNAME_TAKEN,
    invitation_lines,
)
from datasets.models import Membership, Project, Role

USERNAME_CONFUSABLE = (
    "This username mixes letters of different scripts that look alike (e.g. a Cyrillic “а” "
    "among Latin letters); write it in one script."
)
NO_LINES = "Enter at least one email address or name, one per line."
NOT_A_MEMBER = (
    "{username} is not a member of this project. To add someone, invite them below: an "
    "invitation link works for an existing account too (they log in and accept it)."
)


class MemberRoleForm(forms.Form):
    """A member's new role. Only members of the project: a manager cannot add an account by its
    username (that person never agreed to join, and the answer would tell which usernames
    exist); people join through an invitation they accept."""

    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.project = project

    def clean_username(self) -> str:
        username = self.cleaned_data["username"].strip()
        membership = (
            Membership.objects.select_related("user")
            .filter(project=self.project, user__username=username)
            .first()
        )
        if membership is None:
            raise forms.ValidationError(NOT_A_MEMBER.format(username=username))
        self.cleaned_data["user"] = membership.user
        return username


class InviteForm(forms.Form):
    """One or many people to invite: an email address or a name per line, and their role."""

    people = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=MAX_INVITATIONS_AT_ONCE * 260,
        help_text=(
            "One per line: an email address (the link is mailed when this server can send mail) "
            "or a name to recognise the link by."
        ),
    )
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)

    def clean_people(self) -> list[tuple[int, str]]:
        lines = invitation_lines(text=self.cleaned_data["people"])
        if not lines:
            raise forms.ValidationError(NO_LINES)
        if len(lines) > MAX_INVITATIONS_AT_ONCE:
            raise forms.ValidationError(TOO_MANY_LINES)
        return lines


class AcceptForm(UserCreationForm):
    """A new account from an invitation: a username and a password (Django's validators)."""

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username",)

    def __init__(self, *args, email: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        # The password validators compare the password with the address, as they would later.
        self.instance.email = email

    def clean_username(self) -> str:
        """Django's checks (NFKC, characters, taken), then: no case variant or compatibility
        form of an existing name ("Alice" beside "alice"), and no name mixing Latin letters
        with look-alikes from another script ("аdmin" with a Cyrillic а): either would pass
        for another person."""
        username = super().clean_username()
        if username is None:  # Django found it taken (its check: the database's iexact)
            return username
        if users_named(username):
            raise forms.ValidationError(USERNAME_TAKEN)
        if confusables.is_dangerous(username, preferred_aliases=["latin", "common"]):
            raise forms.ValidationError(USERNAME_CONFUSABLE)
        return username


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=TOKEN_NAME_MAX, help_text="What uses it, e.g. “labelling script on gpu-3”."
    )
    days = forms.TypedChoiceField(
        choices=[(days, f"{days} days") for days in TOKEN_LIFETIMES_DAYS],
        coerce=int,
        initial=90,
        label="Expires after",
    )
