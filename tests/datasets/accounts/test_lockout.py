"""Brute force: wrong passwords lock a username out (login page, admin, token endpoint) with a
clear message, even the right password then; managers and administrators unlock; each client
address is throttled on every credential endpoint."""

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from tests import factories

pytestmark = pytest.mark.django_db

LOCKED = "too many failed attempts"


def _login(client, password):
    return client.post(reverse("login"), {"username": "annotator", "password": password})


def _token(client, password, username="annotator"):
    return client.post(
        reverse("api-token"),
        {"username": username, "password": password},
        content_type="application/json",
    )


def test_login_page_locks_the_username_then_refuses_the_right_password(client, annotator, settings):
    for attempt in range(50):
        cache.clear()  # the per-address throttle aside: this is the username lockout
        response = _login(client, f"wrong-{attempt}")
        if attempt < settings.AXES_FAILURE_LIMIT - 1:
            assert response.status_code == 200, attempt
        else:
            assert response.status_code == 429, attempt
            assert LOCKED in response.content.decode().lower()
    response = _login(client, factories.PASSWORD)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    # The API is locked for the username too.
    response = _token(client, factories.PASSWORD)
    assert response.status_code == 429 and LOCKED in response.json()["detail"].lower()


def test_token_endpoint_locks_the_username(client, manager, annotator, settings):
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        cache.clear()
        response = _token(client, f"wrong-{attempt}")
        assert response.status_code in (400, 429)
    cache.clear()
    response = _token(client, factories.PASSWORD)
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    # Others are not locked.
    assert _token(client, factories.PASSWORD, username="manager").status_code == 201


def test_locked_out_attempts_cost_no_password_hash(client, annotator, settings, monkeypatch):
    """Once locked, axes refuses before the (deliberately slow) hasher runs."""
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        cache.clear()
        _login(client, f"wrong-{attempt}")
    from django.contrib.auth.hashers import MD5PasswordHasher

    calls = []
    original = MD5PasswordHasher.verify
    monkeypatch.setattr(
        MD5PasswordHasher, "verify", lambda self, *a: calls.append(1) or original(self, *a)
    )
    cache.clear()
    assert _login(client, factories.PASSWORD).status_code == 429
    assert calls == []


def test_manager_sees_and_unlocks_a_member(client, project, manager, annotator, settings):
    anonymous = Client()
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        cache.clear()
        _login(anonymous, f"wrong-{attempt}")
    client.force_login(manager)
    page = client.get(reverse("project-members", args=[project.slug]))
    assert "locked out" in page.content.decode()
    assert page.context["locked"] == {"annotator"}
    response = client.post(reverse("project-member-unlock", args=[project.slug, annotator.pk]))
    assert response.status_code == 302
    cache.clear()
    assert _login(anonymous, factories.PASSWORD).status_code == 302
    # Unlocking someone outside the project is not a manager's to do.
    outsider = factories.user("stranger")
    response = client.post(reverse("project-member-unlock", args=[project.slug, outsider.pk]))
    assert response.status_code == 404


def test_admin_login_is_locked_too(annotator, settings):
    admin = factories.user("root", is_staff=True, is_superuser=True)
    client = Client()
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        cache.clear()
        client.post("/admin/login/", {"username": "root", "password": f"wrong-{attempt}"})
    cache.clear()
    response = client.post("/admin/login/", {"username": "root", "password": factories.PASSWORD})
    assert response.status_code == 429
    # An administrator can unlock anyone: the attempts are in the admin (django-axes).
    from axes.models import AccessAttempt

    assert AccessAttempt.objects.filter(username="root").exists()
    assert admin.is_staff


def test_credential_endpoints_are_throttled_per_address(client, annotator, settings):
    """20 attempts a minute per address (CONCORD_THROTTLE_CREDENTIALS), spread over usernames
    so the lockout never starts: the next is 429 with Retry-After."""
    responses = [_token(client, "wrong", username=f"nobody-{n}") for n in range(25)]
    codes = [r.status_code for r in responses]
    assert codes[:20] == [400] * 20 and set(codes[20:]) == {429}, codes
    assert responses[-1].json()["detail"] and responses[-1]["Retry-After"]
    page = [
        client.post(reverse("login"), {"username": f"someone-{n}", "password": "x"})
        for n in range(5)
    ]
    assert page[-1].status_code == 429
    assert "wait" in page[-1].content.decode()


def test_password_reset_tells_the_truth(client, settings):
    settings.CONCORD_MAIL_CONFIGURED = False
    for response in (
        client.get(reverse("password_reset")),
        client.post(reverse("password_reset"), {"email": "someone@example.org"}),
    ):
        page = response.content.decode()
        assert response.status_code == 200
        assert "no mail server" in page and "Check your mail" not in page


def test_password_reset_mails_when_mail_is_configured(client, annotator, settings, mailoutbox):
    settings.CONCORD_MAIL_CONFIGURED = True
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    annotator.email = "annotator@example.org"
    annotator.save(update_fields=["email"])
    response = client.post(reverse("password_reset"), {"email": "annotator@example.org"})
    assert response.status_code == 302
    assert len(mailoutbox) == 1 and "/accounts/reset/" in mailoutbox[0].body


# --- The client's address: X-Forwarded-For only from configured proxies (QA finding 1) --------


def _spoofed(n: int) -> str:
    return f"203.0.113.{n % 250 + 1}"


def test_a_rotated_forwarded_for_header_does_not_escape_the_throttle(client, annotator):
    """No proxy configured (the default): X-Forwarded-For is the client's own claim, so a
    guesser rotating it still has one address. Token endpoint and login page alike."""
    codes = [
        client.post(
            reverse("api-token"),
            {"username": f"nobody-{n}", "password": "wrong"},
            content_type="application/json",
            HTTP_X_FORWARDED_FOR=_spoofed(n),
        ).status_code
        for n in range(25)
    ]
    assert codes[:20] == [400] * 20 and set(codes[20:]) == {429}, codes
    cache.clear()
    page = [
        client.post(
            reverse("login"),
            {"username": f"someone-{n}", "password": "x"},
            HTTP_X_FORWARDED_FOR=_spoofed(n),
        ).status_code
        for n in range(25)
    ]
    assert page[:20] == [200] * 20 and set(page[20:]) == {429}, page


def test_a_rotated_forwarded_for_header_does_not_escape_the_lockout(client, annotator, settings):
    from axes.models import AccessAttempt

    for attempt in range(settings.AXES_FAILURE_LIMIT):
        client.post(
            reverse("login"),
            {"username": "annotator", "password": f"wrong-{attempt}"},
            HTTP_X_FORWARDED_FOR=_spoofed(attempt),
        )
    response = client.post(
        reverse("login"),
        {"username": "annotator", "password": factories.PASSWORD},
        HTTP_X_FORWARDED_FOR=_spoofed(99),
    )
    assert response.status_code == 429
    response = client.post(
        reverse("api-token"),
        {"username": "annotator", "password": factories.PASSWORD},
        content_type="application/json",
        HTTP_X_FORWARDED_FOR=_spoofed(98),
    )
    assert response.status_code == 429
    # axes records the real peer, not the claim.
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}


def test_behind_a_configured_proxy_the_proxy_written_address_counts(client, annotator, settings):
    """CONCORD_PROXY_COUNT=1: the last X-Forwarded-For entry (the proxy's) is the address;
    whatever the client put before it is ignored, and different real clients count apart."""
    from axes.models import AccessAttempt

    settings.CONCORD_PROXY_COUNT = 1

    def attempt(n, forwarded):
        return client.post(
            reverse("api-token"),
            {"username": f"nobody-{n}", "password": "wrong"},
            content_type="application/json",
            HTTP_X_FORWARDED_FOR=forwarded,
        ).status_code

    codes = [attempt(n, f"{_spoofed(n)}, 198.51.100.7") for n in range(21)]
    assert codes[:20] == [400] * 20 and codes[20] == 429, codes
    assert attempt(21, "198.51.100.8") == 400  # another client behind the same proxy
    assert AccessAttempt.objects.filter(ip_address="198.51.100.7").count() == 20
    # A proxy entry that is no address (a broken proxy) falls back to the peer: no 500, even
    # on PostgreSQL, whose inet column would refuse it.
    cache.clear()
    assert attempt(22, "not-an-address") == 400
    assert attempt(23, "\x00") == 400
    assert AccessAttempt.objects.filter(username="nobody-22", ip_address="127.0.0.1").exists()


@pytest.mark.parametrize(
    "proxies, forwarded, expected",
    [
        (0, "203.0.113.9", "127.0.0.1"),
        (0, "", "127.0.0.1"),
        (1, "", "127.0.0.1"),
        (1, "203.0.113.9", "203.0.113.9"),
        (1, "1.1.1.1, 203.0.113.9", "203.0.113.9"),
        (2, "1.1.1.1, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        (2, "203.0.113.9", "127.0.0.1"),
        (1, "1.1.1.1, 2001:db8::1", "2001:db8::1"),
        (1, "1.1.1.1, garbage", "127.0.0.1"),
    ],
)
def test_client_address(rf, settings, proxies, forwarded, expected):
    from datasets.access import client_address

    settings.CONCORD_PROXY_COUNT = proxies
    request = rf.get("/", HTTP_X_FORWARDED_FOR=forwarded) if forwarded else rf.get("/")
    assert client_address(request) == expected


# --- A new password lifts the lockout (QA finding 6) ---------------------------------------


def test_a_password_reset_lifts_the_lockout(client, annotator, settings, mailoutbox):
    import re

    from datasets.accounts.selectors import locked_usernames

    settings.CONCORD_MAIL_CONFIGURED = True
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    annotator.email = "annotator@example.org"
    annotator.save(update_fields=["email"])
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        cache.clear()
        _login(client, f"wrong-{attempt}")
    assert locked_usernames(usernames=["annotator"]) == {"annotator"}
    cache.clear()
    client.post(reverse("password_reset"), {"email": "annotator@example.org"})
    link = re.search(r"http://testserver(/accounts/reset/\S+)", mailoutbox[0].body).group(1)
    form = client.get(link, follow=True)
    assert form.status_code == 200
    new = "a completely fresh passphrase"
    done = client.post(form.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert done.status_code == 302 and done["Location"] == reverse("password_reset_complete")
    assert locked_usernames(usernames=["annotator"]) == set()
    cache.clear()
    response = client.post(reverse("login"), {"username": "annotator", "password": new})
    assert response.status_code == 302


def test_any_new_password_lifts_the_lockout_but_a_login_does_not(annotator, settings):
    from datasets.accounts.selectors import locked_usernames

    for attempt in range(settings.AXES_FAILURE_LIMIT):
        cache.clear()
        _login(Client(), f"wrong-{attempt}")
    # A save without a new password (e.g. last_login) leaves it locked.
    annotator.first_name = "Ann"
    annotator.save()
    assert locked_usernames(usernames=["annotator"]) == {"annotator"}
    annotator.set_password("an administrator chose this one")  # the admin, changepassword
    annotator.save()
    assert locked_usernames(usernames=["annotator"]) == set()


# --- The password change page counts wrong current passwords (QA finding 9) -----------------


def test_guessing_the_current_password_locks_the_account_and_ends_the_session(
    client, annotator, settings
):
    from datasets.accounts.selectors import locked_usernames

    client.force_login(annotator)
    other_session = Client()
    other_session.force_login(annotator)  # a second stolen session, signed in before

    def change(session, old):
        cache.clear()  # the per-address throttle aside
        new = "a new passphrase 9"
        return session.post(
            reverse("password_change"),
            {"old_password": old, "new_password1": new, "new_password2": new},
        )

    for attempt in range(settings.AXES_FAILURE_LIMIT - 1):
        response = change(client, f"guess-{attempt}")
        assert response.status_code == 200, attempt
        assert response.context["form"].errors["old_password"]
    response = change(client, "guess-last")
    assert response.status_code == 429 and LOCKED in response.content.decode().lower()
    assert "_auth_user_id" not in client.session
    assert locked_usernames(usernames=["annotator"]) == {"annotator"}
    # Even with the right password, another session of the account cannot change it now.
    response = change(other_session, factories.PASSWORD)
    assert response.status_code == 429 and "_auth_user_id" not in other_session.session
    annotator.refresh_from_db()
    assert annotator.check_password(factories.PASSWORD)


def test_a_right_current_password_changes_it(client, annotator):
    client.force_login(annotator)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": factories.PASSWORD,
            "new_password1": "a new passphrase 9",
            "new_password2": "a new passphrase 9",
        },
    )
    assert response.status_code == 302
    annotator.refresh_from_db()
    assert annotator.check_password("a new passphrase 9")
