"""Receivers of the accounts stage: a changed password revokes every API token of its user."""

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save

from datasets.accounts.services import tokens_revoke_all


def revoke_tokens_on_password_change(sender, instance, created: bool, **kwargs) -> None:
    # set_password() leaves the new raw password in _password until the save completes (Django
    # calls its password validators' password_changed() from it); a hash upgrade at login
    # does not, so only a real change revokes the tokens. Any path counts: the password change
    # and reset pages, the admin, `changepassword`, the shell.
    if not created and getattr(instance, "_password", None) is not None:
        tokens_revoke_all(user=instance)


def connect() -> None:
    post_save.connect(
        revoke_tokens_on_password_change,
        sender=get_user_model(),
        dispatch_uid="concord-revoke-tokens-on-password-change",
    )
