"""Brute force, in figures: what a wrong password costs the server before and after the lockout.

    .venv/bin/python bench/lockout.py [--attempts 50]

Runs in a fresh temporary var folder (SQLite), with Django's production password hasher
(PBKDF2, 1,000,000 iterations in Django 5.2). Posts wrong passwords for one username to the
login page and to the token endpoint, then the right one, and prints per attempt the status and
the median time of the attempts before and after django-axes locked the username out: a
locked-out attempt never runs the hasher. The per-address throttle is raised out of the way so
that only the lockout is measured.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=50, help="wrong passwords per endpoint")
    args = parser.parse_args()

    var = tempfile.mkdtemp(prefix="concord-bench-")
    os.environ.update(
        CONCORD_VAR_DIR=var,
        DEBUG="1",
        LOG_LEVEL="WARNING",
        CONCORD_THROTTLE_CREDENTIALS="100000/minute",
        ALLOWED_HOSTS="testserver",
    )
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    password = "the right passphrase"
    for name in ("page-user", "api-user"):
        get_user_model().objects.create_user(name, password=password)
    print(
        f"hasher {settings.PASSWORD_HASHERS[0].rsplit('.', 1)[-1]}, lockout after "
        f"{settings.AXES_FAILURE_LIMIT} failures, {args.attempts} wrong passwords per endpoint"
    )
    client = Client()
    endpoints = {
        "login page": lambda secret: client.post(
            "/accounts/login/", {"username": "page-user", "password": secret}
        ),
        "token API": lambda secret: client.post(
            "/api/v1/auth/token/",
            {"username": "api-user", "password": secret},
            content_type="application/json",
        ),
    }
    for name, attempt in endpoints.items():
        before, after, codes = [], [], []
        for n in range(args.attempts):
            started = time.perf_counter()
            response = attempt(f"wrong-{n}")
            elapsed = time.perf_counter() - started
            codes.append(response.status_code)
            (after if response.status_code == 429 else before).append(elapsed)
        right = attempt(password).status_code
        print(
            f"{name:>10}: wrong attempts answered {_runs(codes)}; median "
            f"{_ms(before)} before the lockout, {_ms(after)} after; "
            f"then the right password: {right}"
        )


def _runs(codes: list[int]) -> str:
    runs: list[list[int]] = []
    for code in codes:
        if runs and runs[-1][0] == code:
            runs[-1][1] += 1
        else:
            runs.append([code, 1])
    return ", ".join(f"{count}x {code}" for code, count in runs)


def _ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:.1f} ms" if times else "-"


if __name__ == "__main__":
    main()
