"""A minimal Django site whose login is password + emailed code, from PyPI packages only.

django-two-factor-auth's login wizard (auth step, then token step) with its email method
(django-otp's EmailDevice), SQLite, database sessions, DEBUG off, and the Argon2id hasher
with Caregate's parameters (m=19456 KiB, t=2, p=1): the reference bench/login_cost.py
measures Caregate against. Every value that differs per run comes from the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PEER_VAR_DIR", str(BASE_DIR / "var")))

SECRET_KEY = os.environ.get(
    "PEER_SECRET_KEY", "peer-site-benchmark-only-key-not-a-secret-0123456789"
)
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_otp",
    "django_otp.plugins.otp_static",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_email",
    "two_factor",
    "two_factor.plugins.email",
]

# What startproject writes, plus django-otp's middleware (request.user.is_verified).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "peer_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite as Caregate's default runs it (WAL, IMMEDIATE), so the two differ in code only.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "peer.sqlite3",
        "CONN_MAX_AGE": 60,
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

PASSWORD_HASHERS = ["peer_site.hashers.BenchArgon2PasswordHasher"]

LOGIN_URL = "two_factor:login"
LOGIN_REDIRECT_URL = "home"

EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = os.environ.get("PEER_EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = int(os.environ.get("PEER_EMAIL_PORT", "25"))
DEFAULT_FROM_EMAIL = "Peer <no-reply@peer.invalid>"
# The benchmark signs each user in once; no cool-down between a user's codes is needed.
OTP_EMAIL_COOLDOWN_DURATION = 0

LANGUAGE_CODE = "en-us"
TIME_ZONE = "America/New_York"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
