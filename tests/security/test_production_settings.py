"""A production process refuses to start with settings an attacker would thank us for.

Each case starts ``manage.py check`` in a subprocess (settings are read once, at start-up)
with one unsafe value in an otherwise valid production environment.
"""

from __future__ import annotations

import pytest
from django.core.management import CommandError

from caregate.security.checks import oidc_problems, production_problems, refuse_in_production
from tests.test_settings import manage, production_env


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # A key an attacker can brute-force or find in a tutorial signs sessions and codes.
        (
            {"CAREGATE_SECRET_KEY": "x" * 20 + "abcdefghij"},
            "CAREGATE_SECRET_KEY must be at least 50 characters",
        ),
        (
            {"CAREGATE_SECRET_KEY": "django-insecure-" + "k3y-0f-a-fr3sh-pr0j3ct-" * 3},
            "must not be a generated django-insecure key",
        ),
        ({"CAREGATE_SECRET_KEY": "ab" * 30}, "must not repeat a few characters"),
        # Per-process counters: 4 workers would allow 4 times every rate limit.
        ({"REDIS_URL": ""}, "REDIS_URL is required in production mode"),
        # Codes and registration links in clear text to a remote relay.
        ({"EMAIL_HOST": "smtp.example.net"}, "EMAIL_USE_TLS or EMAIL_USE_SSL is required"),
        # Emailed links to nowhere, or over plain http.
        ({"CAREGATE_PUBLIC_BASE_URL": ""}, "CAREGATE_PUBLIC_BASE_URL is required"),
        (
            {"CAREGATE_PUBLIC_BASE_URL": "http://portal.example.org"},
            "CAREGATE_PUBLIC_BASE_URL must be an https:// origin",
        ),
        (
            {"CAREGATE_PUBLIC_BASE_URL": "https://portal.example.org/portal"},
            "CAREGATE_PUBLIC_BASE_URL must be an https:// origin",
        ),
    ],
)
def test_production_refuses_to_start_with_an_unsafe_setting(extra, message) -> None:
    result = manage("check", **production_env(**extra))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize(
    "extra",
    [
        {"REDIS_URL": "", "CAREGATE_ALLOW_LOCAL_CACHE": "true"},  # one process, said so
        {"EMAIL_HOST": "smtp.example.net", "EMAIL_USE_TLS": "true"},
        {"EMAIL_HOST": "smtp.example.net", "EMAIL_USE_SSL": "true", "EMAIL_PORT": "465"},
        {"EMAIL_HOST": "127.0.0.1"},  # a relay on this host: nothing leaves it in clear
        {"CAREGATE_EMAIL_BACKEND": "console"},
    ],
)
def test_production_starts_with_the_safe_alternatives(extra) -> None:
    result = manage("check", **production_env(**extra))
    assert result.returncode == 0, result.stderr


def test_every_problem_is_named_at_once() -> None:
    result = manage(
        "check",
        **production_env(CAREGATE_SECRET_KEY="short", REDIS_URL="", CAREGATE_PUBLIC_BASE_URL=""),
    )
    assert result.returncode != 0
    for message in ["at least 50 characters", "REDIS_URL", "CAREGATE_PUBLIC_BASE_URL"]:
        assert message in result.stderr


def test_development_mode_keeps_its_conveniences() -> None:
    # No key, no Redis, no public URL: development still starts (the checks are production's).
    result = manage("check")
    assert result.returncode == 0, result.stderr


def test_the_checks_pass_a_safe_configuration() -> None:
    assert (
        production_problems(
            secret_key="s" + "0123456789abcdef" * 4,
            redis_url="redis://cache:6379/0",
            allow_local_cache=False,
            email_backend="smtp",
            email_host="smtp.example.net",
            email_use_tls=True,
            email_use_ssl=False,
            public_base_url="https://portal.example.org",
        )
        == []
    )


def test_demo_data_command_is_refused_in_production(settings) -> None:
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="load_demo is not allowed in production mode"):
        refuse_in_production("load_demo")
    settings.PRODUCTION = False
    refuse_in_production("load_demo")  # development: allowed


@pytest.mark.django_db
def test_load_demo_itself_refuses_in_production_and_creates_nothing(settings) -> None:
    from django.core.management import call_command

    from caregate.accounts.models import User

    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="load_demo is not allowed in production mode"):
        call_command("load_demo")
    assert not User.objects.exists()


def oidc(**changes: object) -> list[str]:
    values = {
        "issuer": "https://login.example.org/tenant/v2.0",
        "client_id": "caregate",
        "role_map": "cg-support=support",
        "internal_domain": "staff.example.org",
        "production": True,
    }
    values.update(changes)
    return oidc_problems(**values)


def test_staff_login_settings_that_cannot_work_are_refused() -> None:
    assert oidc() == []
    assert oidc(issuer="", client_id="", role_map="") == []  # staff LOGIN off
    assert "CAREGATE_OIDC_ROLE_MAP entry" in oidc(role_map="cg=admin")[0]
    assert "CAREGATE_OIDC_ROLE_MAP entry" in oidc(issuer="", role_map="nonsense")[0]
    assert "CAREGATE_OIDC_CLIENT_ID is required" in oidc(client_id="")[0]
    assert "no staff member could sign in" in oidc(role_map="")[0]


def test_production_staff_login_needs_https_and_the_reserved_domain() -> None:
    assert "must be an https:// URL" in oidc(issuer="http://login.example.org")[0]
    assert "CAREGATE_INTERNAL_EMAIL_DOMAIN is required" in oidc(internal_domain="")[0]
    assert oidc(issuer="http://127.0.0.1:9000", internal_domain="", production=False) == []


def test_a_bad_role_map_stops_the_start() -> None:
    result = manage("check", CAREGATE_OIDC_ROLE_MAP="support")
    assert result.returncode != 0 and "CAREGATE_OIDC_ROLE_MAP entry" in result.stderr
