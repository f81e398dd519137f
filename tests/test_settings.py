"""Production-mode settings (checked in a subprocess) and password hashing."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import argon2
import pytest
from django.contrib.auth.hashers import get_hasher, make_password

from caregate.accounts.models import User
from caregate.delivery.models import OutboxMessage
from caregate.flows.registration_links import send_registration_link
from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parent.parent
HOST = "portal.example.org"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any Caregate, database or Redis setting.

    The browser tests set DJANGO_ALLOW_ASYNC_UNSAFE in this process (Playwright's sync API runs
    an event loop); a production process never has it, and the deploy check rejects it.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CAREGATE_", "EMAIL_", "TWILIO_"))
        and k
        not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    env.update(extra)
    return env


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def strong_key() -> str:
    key = secrets.token_urlsafe(48)
    assert len(key) >= 50
    return key


PUBLIC_URL = "https://portal.example.org"


def production_env(**extra: str) -> dict[str, str]:
    """A production configuration that starts; ``extra`` changes or (with "") removes."""
    env = {
        "CAREGATE_ENV": "production",
        "CAREGATE_SECRET_KEY": strong_key(),
        "CAREGATE_ALLOWED_HOSTS": HOST,
        "REDIS_URL": "redis://127.0.0.1:6379/5",
        "CAREGATE_PUBLIC_BASE_URL": PUBLIC_URL,
    }
    env.update(extra)
    return {name: value for name, value in env.items() if value != ""}


# --- production mode --------------------------------------------------------------------


def test_production_without_secret_key_refuses_to_start():
    result = manage("check", "--deploy", CAREGATE_ENV="production", CAREGATE_ALLOWED_HOSTS=HOST)
    assert result.returncode != 0
    assert "CAREGATE_SECRET_KEY is required in production mode" in result.stderr


def test_production_without_allowed_hosts_refuses_to_start():
    result = manage(
        "check", "--deploy", CAREGATE_ENV="production", CAREGATE_SECRET_KEY=strong_key()
    )
    assert result.returncode != 0
    assert "CAREGATE_ALLOWED_HOSTS is required in production mode" in result.stderr


def test_production_with_key_and_hosts_passes_the_deploy_check():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **production_env())
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues" in result.stdout


def test_production_refuses_a_weak_key_before_the_deploy_check():
    result = manage("check", "--deploy", **production_env(CAREGATE_SECRET_KEY="short-key"))
    assert result.returncode != 0
    assert "CAREGATE_SECRET_KEY must be at least 50 characters" in result.stderr


def test_production_without_public_base_url_refuses_to_start():
    result = manage("check", **production_env(CAREGATE_PUBLIC_BASE_URL=""))
    assert result.returncode != 0
    assert "CAREGATE_PUBLIC_BASE_URL is required in production mode" in result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"CAREGATE_DEBUG": "true"}, "CAREGATE_DEBUG cannot be on in production mode"),
        ({"CAREGATE_EMAIL_BACKEND": "outbox"}, "the dev outbox cannot be used in production"),
        ({"CAREGATE_PHONE_BACKEND": "outbox"}, "the dev outbox cannot be used in production"),
    ],
)
def test_production_refuses_development_conveniences(extra, message):
    result = manage("check", **production_env(**extra))
    assert result.returncode != 0
    assert message in result.stderr


def test_unknown_mode_refuses_to_start():
    result = manage("check", CAREGATE_ENV="staging")
    assert result.returncode != 0
    assert "CAREGATE_ENV must be 'development' or 'production'" in result.stderr


SHOW = """
import json
import django
django.setup()
from django.conf import settings
names = [
    "DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS", "CAREGATE_DEV_OUTBOX", "EMAIL_BACKEND", "CAREGATE_PHONE_BACKEND",
    "ALLOWED_HOSTS", "SESSION_COOKIE_HTTPONLY", "CSRF_COOKIE_HTTPONLY", "X_FRAME_OPTIONS",
    "CAREGATE_PUBLIC_BASE_URL",
]
print(json.dumps({name: getattr(settings, name, None) for name in names}))
"""


def show_settings(script: str = SHOW, **env: str) -> dict:
    """What ``script`` prints (JSON) in a fresh process with these settings."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=clean_env(DJANGO_SETTINGS_MODULE="caregate.settings", **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_defaults_are_safe():
    values = show_settings(**production_env())
    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 31536000
    assert values["CAREGATE_DEV_OUTBOX"] is False
    assert values["EMAIL_BACKEND"] == "caregate.delivery.smtp.EmailBackend"
    assert values["CAREGATE_PHONE_BACKEND"] == "twilio"
    assert values["ALLOWED_HOSTS"] == [HOST]
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["X_FRAME_OPTIONS"] == "DENY"
    assert values["CAREGATE_PUBLIC_BASE_URL"] == PUBLIC_URL


def test_development_defaults():
    values = show_settings()
    assert values["DEBUG"] is True
    assert values["CAREGATE_DEV_OUTBOX"] is True
    assert values["EMAIL_BACKEND"] == "caregate.delivery.outbox.OutboxEmailBackend"
    assert values["CAREGATE_PUBLIC_BASE_URL"] == "http://127.0.0.1:8000"


# --- the public URL of emailed links (make run on another PORT) -------------------------

FAKE_PYTHON = """#!/bin/sh
echo "$1 $2 base=$CAREGATE_PUBLIC_BASE_URL"
"""


def make_run(tmp_path: Path, **env: str) -> list[str]:
    """Run the Makefile's ``run`` recipe with a stand-in python that prints what each
    command would get as CAREGATE_PUBLIC_BASE_URL (nothing is installed or served)."""
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()  # newer than the requirements: no install step
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    result = subprocess.run(
        ["make", "--no-print-directory", "run", f"VENV={venv}", f"PY={fake}"],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith("manage.py")]


def test_make_run_on_another_port_emails_links_to_that_port(tmp_path):
    lines = make_run(tmp_path, PORT="9000")
    assert lines, "the run recipe ran no manage.py command"
    assert "manage.py runserver base=http://127.0.0.1:9000" in lines
    assert all(line.endswith("base=http://127.0.0.1:9000") for line in lines)


def test_make_run_keeps_an_operators_public_url(tmp_path):
    lines = make_run(tmp_path, PORT="9000", CAREGATE_PUBLIC_BASE_URL="https://dev.example.org")
    assert "manage.py runserver base=https://dev.example.org" in lines


@pytest.mark.django_db
def test_registration_link_email_uses_the_public_base_url(make_user, settings):
    settings.CAREGATE_PUBLIC_BASE_URL = "http://127.0.0.1:9000"
    user = make_user(mfa="none")
    assert send_registration_link(user)
    body = OutboxMessage.objects.get(to=user.email).body
    assert "http://127.0.0.1:9000/registration-link/" in body
    assert ":8000" not in body


# --- password hashing -------------------------------------------------------------------


@pytest.mark.deployment_argon2
@pytest.mark.django_db
def test_passwords_are_argon2id_with_owasp_parameters(email_user):
    encoded = email_user.password
    assert encoded.startswith("argon2$argon2id$v=19$m=19456,t=2,p=1$")
    params = argon2.extract_parameters(encoded.removeprefix("argon2"))
    assert params.type is argon2.Type.ID
    assert (params.memory_cost, params.time_cost, params.parallelism) == (19456, 2, 1)
    assert PASSWORD not in encoded


@pytest.mark.deployment_argon2
def test_default_hasher_is_the_configured_argon2():
    assert get_hasher().algorithm == "argon2"
    assert make_password("x" * 12).startswith("argon2$argon2id$v=19$m=19456,t=2,p=1$")


def test_argon2_parameters_come_from_settings(settings):
    settings.CAREGATE_ARGON2_MEMORY_KIB = 8192
    settings.CAREGATE_ARGON2_TIME_COST = 3
    assert make_password("x" * 12).startswith("argon2$argon2id$v=19$m=8192,t=3,p=1$")


def email_sign_in(client, email: str, password: str = PASSWORD):
    client.post("/login/start/", {"method": "email"})
    return client.post("/email-login/credentials/", {"email": email, "password": password})


@pytest.mark.deployment_argon2
@pytest.mark.django_db
def test_raised_parameters_rehash_at_the_next_sign_in(client, email_user, settings):
    settings.CAREGATE_ARGON2_MEMORY_KIB = 24576
    response = email_sign_in(client, email_user.email)
    assert response.url == "/email-login/email-code/"
    email_user.refresh_from_db()
    assert email_user.password.startswith("argon2$argon2id$v=19$m=24576,t=2,p=1$")


@pytest.mark.deployment_argon2
@pytest.mark.django_db
def test_legacy_pbkdf2_hash_is_upgraded_at_sign_in(client, make_user):
    user = make_user()
    User.objects.filter(pk=user.pk).update(
        password=make_password(PASSWORD, hasher="pbkdf2_sha256")
    )
    response = email_sign_in(client, user.email)
    assert response.url == "/email-login/email-code/"
    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$v=19$m=19456,t=2,p=1$")


@pytest.mark.django_db
def test_legacy_hash_is_not_upgraded_by_a_wrong_password(client, make_user):
    user = make_user()
    legacy = make_password(PASSWORD, hasher="pbkdf2_sha256")
    User.objects.filter(pk=user.pk).update(password=legacy)
    email_sign_in(client, user.email, "Wrong-Password-123")
    user.refresh_from_db()
    assert user.password == legacy


# --- PostgreSQL: server-side parameters and prepared statements ---------------------------

DB_OPTIONS = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps(settings.DATABASES["default"].get("OPTIONS", {})))
"""


def database_options(**env: str) -> dict:
    return show_settings(DB_OPTIONS, **env)


def test_postgresql_prepares_statements_unless_told_not_to():
    url = "postgres://postgres@127.0.0.1:5432/anything"
    assert database_options(DATABASE_URL=url) == {
        "server_side_binding": True,
        "prepare_threshold": 5,
    }
    assert database_options(DATABASE_URL=url, CAREGATE_DB_PREPARE_THRESHOLD="2") == {
        "server_side_binding": True,
        "prepare_threshold": 2,
    }
    # Behind a pooler in transaction mode: neither (Django's client-side binding).
    assert database_options(DATABASE_URL=url, CAREGATE_DB_PREPARED_STATEMENTS="false") == {}
    assert "server_side_binding" not in database_options()  # SQLite


@pytest.mark.django_db
def test_a_statement_run_often_is_prepared_on_its_connection():
    from django.db import connection

    with connection.cursor() as cursor:
        for n in range(6):
            cursor.execute("SELECT %s::int + 1 AS caregate_prepared_probe", [n])
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%caregate_prepared_probe%"],
        )
        assert cursor.fetchone()[0] == 1
