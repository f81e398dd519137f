"""Django settings for Caregate, every value from the environment (see README)."""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from caregate.config import env_bool, env_float, env_int, env_list, env_str
from caregate.ops.logs import logging_config
from caregate.security.checks import oidc_problems, production_problems

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CAREGATE_VAR_DIR", str(BASE_DIR / "var")))

# --- mode -----------------------------------------------------------------------------
CAREGATE_ENV = env_str("CAREGATE_ENV", "development")
if CAREGATE_ENV not in {"development", "production"}:
    raise ImproperlyConfigured("CAREGATE_ENV must be 'development' or 'production'")
PRODUCTION = CAREGATE_ENV == "production"
DEBUG = env_bool("CAREGATE_DEBUG", not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("CAREGATE_DEBUG cannot be on in production mode")

SECRET_KEY = env_str("CAREGATE_SECRET_KEY")
ALLOWED_HOSTS = env_list("CAREGATE_ALLOWED_HOSTS")
if PRODUCTION:
    # Refuse to start rather than run with a guessable key or a host-header hole.
    if not SECRET_KEY:
        raise ImproperlyConfigured("CAREGATE_SECRET_KEY is required in production mode")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("CAREGATE_ALLOWED_HOSTS is required in production mode")
else:
    SECRET_KEY = SECRET_KEY or "development-only-insecure-key-do-not-use-in-production-caregate"
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["127.0.0.1", "localhost", "[::1]", "testserver"]
CSRF_TRUSTED_ORIGINS = env_list("CAREGATE_CSRF_TRUSTED_ORIGINS")

# The dev outbox (/dev/outbox/) exists only in development mode.
CAREGATE_DEV_OUTBOX = not PRODUCTION

# --- applications ---------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "csp",
    "django_tasks",
    # Before django_tasks_db: its db_worker command is ours, woken by NOTIFY
    # (caregate/delivery/management/commands/db_worker.py).
    "caregate.delivery",
    "django_tasks_db",  # the task queue's database backend (background delivery)
    "caregate.accounts",
    "caregate.audit",
    "caregate.verification",
    "caregate.flows",
    "caregate.portal",
    "caregate.staff",
    "caregate.ops",
    "caregate.factors",  # issue #11: authenticator app, recovery codes, factor choice
    "caregate.passkeys",  # issue #11: WebAuthn
]

MIDDLEWARE = [
    # First: every later middleware's log lines carry the request id, and the timing
    # covers the whole stack.
    "caregate.ops.requestid.RequestIdMiddleware",
    "caregate.ops.metrics.RequestMetricsMiddleware",
    # Outside the sessions: Redis or the database down gives a 503 "try again" page.
    "caregate.ops.faults.ServiceOutageMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "caregate.security.middleware.SessionLifetimeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # django-csp's, plus the staff LOGIN's identity provider as a form-action target.
    "caregate.security.middleware.ContentSecurityPolicyMiddleware",
    "caregate.security.middleware.NoStoreMiddleware",
]

ROOT_URLCONF = "caregate.urls"
WSGI_APPLICATION = "caregate.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "caregate" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "caregate.portal.context.branding",
            ],
            # {% url %} with its answers cached (the same HTML; reverse() was ~25 us a tag).
            "builtins": ["caregate.portal.templatetags.cached_url"],
        },
    },
]
# Plain inputs drawn in Python, the same HTML as Django's widget templates (a template
# include chain per field was most of the sign-in pages' render time).
FORM_RENDERER = "caregate.portal.rendering.FormRenderer"

# --- data -----------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'caregate.sqlite3'}"),
        conn_max_age=env_int("CAREGATE_DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default under concurrent requests: WAL lets readers run beside the one
    # writer, and IMMEDIATE transactions take the write lock at BEGIN, so a read-then-write
    # (a code check, an audit append) waits its turn instead of failing "database is
    # locked" halfway; SQLite ignores SELECT ... FOR UPDATE, and this is what serializes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "CAREGATE_DB_PREPARED_STATEMENTS", True
):
    # Server-side parameters, and each statement prepared on its connection from its
    # CAREGATE_DB_PREPARE_THRESHOLD-th use: PostgreSQL then skips parsing and planning the
    # same few statements every request runs. Off (false) behind a connection pooler in
    # transaction mode (PgBouncer before 1.21), which cannot keep prepared statements.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True,
        prepare_threshold=env_int("CAREGATE_DB_PREPARE_THRESHOLD", 5),
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
# Production refuses to run without Redis unless this says the deployment is one process.
CAREGATE_ALLOW_LOCAL_CACHE = env_bool("CAREGATE_ALLOW_LOCAL_CACHE", False)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "caregate.ops.redis_cache.RedisCache",  # Django's, one client per pool
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CAREGATE_CACHE_PREFIX", "caregate"),
            # A hung Redis must fail a request in about a second (the outage page, rate
            # limits closed), not hold every worker until gunicorn's 30-second timeout.
            "OPTIONS": {
                "socket_timeout": env_float("CAREGATE_REDIS_TIMEOUT_SECONDS", 1.0),
                "socket_connect_timeout": env_float("CAREGATE_REDIS_TIMEOUT_SECONDS", 1.0),
            },
        }
    }
    # Sessions in the database, read through Redis (Django's cached_db, without the key
    # checks and double writes it does at sign-in: caregate/security/session_store.py).
    SESSION_ENGINE = "caregate.security.session_store"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SESSION_ENGINE = "caregate.security.session_store_db"

# --- authentication -------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["caregate.accounts.backends.EmailOrUsernameBackend"]
LOGIN_URL = "portal:login"

# Argon2id first; the others only verify (and then upgrade) imported legacy hashes.
PASSWORD_HASHERS = [
    "caregate.accounts.hashers.ConfiguredArgon2PasswordHasher",
    # Argon2id over an imported pbkdf2_sha256 hash (import_users, migration accounts 0006).
    "caregate.accounts.hashers.Argon2WrappedPBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
# OWASP Password Storage Cheat Sheet minimum for Argon2id: m=19 MiB, t=2, p=1.
CAREGATE_ARGON2_MEMORY_KIB = env_int("CAREGATE_ARGON2_MEMORY_KIB", 19456)
CAREGATE_ARGON2_TIME_COST = env_int("CAREGATE_ARGON2_TIME_COST", 2)
CAREGATE_ARGON2_PARALLELISM = env_int("CAREGATE_ARGON2_PARALLELISM", 1)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env_int("CAREGATE_PASSWORD_MIN_LENGTH", 12)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- sessions and cookies -------------------------------------------------------------
# HIPAA automatic logoff: idle timeout and an absolute lifetime, both enforced on the server
# by SessionLifetimeMiddleware. The cookie itself is a browser-session cookie.
CAREGATE_IDLE_TIMEOUT_SECONDS = env_int("CAREGATE_IDLE_TIMEOUT_MINUTES", 30) * 60
CAREGATE_SESSION_MAX_SECONDS = env_int("CAREGATE_SESSION_MAX_HOURS", 12) * 3600
SESSION_COOKIE_AGE = CAREGATE_SESSION_MAX_SECONDS
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_SERIALIZER = "django.contrib.sessions.serializers.JSONSerializer"
SESSION_COOKIE_NAME = "caregate_session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION

# --- security headers -----------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("CAREGATE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("CAREGATE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("CAREGATE_HSTS_PRELOAD", True)
    if env_bool("CAREGATE_BEHIND_TLS_PROXY", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# No inline script or style anywhere: every script is a static file.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [SELF],
        "object-src": [NONE],
    }
}
# How many reverse proxies sit in front of the app (their X-Forwarded-For entries are
# trusted); 0 means the client address is REMOTE_ADDR.
CAREGATE_TRUSTED_PROXY_COUNT = env_int("CAREGATE_TRUSTED_PROXY_COUNT", 0)

# --- email ----------------------------------------------------------------------------
_EMAIL_BACKENDS = {
    "outbox": "caregate.delivery.outbox.OutboxEmailBackend",
    "smtp": "caregate.delivery.smtp.EmailBackend",  # Django's, its connection kept open
    "console": "django.core.mail.backends.console.EmailBackend",
}
_email_backend = env_str("CAREGATE_EMAIL_BACKEND", "smtp" if PRODUCTION else "outbox")
if _email_backend not in _EMAIL_BACKENDS:
    raise ImproperlyConfigured("CAREGATE_EMAIL_BACKEND must be outbox, smtp or console")
if PRODUCTION and _email_backend == "outbox":
    raise ImproperlyConfigured("the dev outbox cannot be used in production mode")
EMAIL_BACKEND = _EMAIL_BACKENDS[_email_backend]
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Caregate <no-reply@caregate.invalid>")

# --- background delivery (django-tasks) ------------------------------------------------
# Every email, SMS and call is a task: in production the database backend, run by
# `manage.py db_worker` (django-tasks-db); in development and tests the immediate backend,
# which runs it inside the request. The queue's rows carry only a Delivery id.
_TASK_BACKENDS = {
    "database": "django_tasks_db.DatabaseBackend",
    "immediate": "django_tasks.backends.immediate.ImmediateBackend",
}
_tasks_backend = env_str("CAREGATE_TASKS_BACKEND", "database" if PRODUCTION else "immediate")
if _tasks_backend not in _TASK_BACKENDS:
    raise ImproperlyConfigured("CAREGATE_TASKS_BACKEND must be database or immediate")
TASKS = {"default": {"BACKEND": _TASK_BACKENDS[_tasks_backend]}}
# Waits before the second, third… attempt of a failed send (then it is failed). The
# immediate backend cannot wait: there the attempts follow one another at once.
CAREGATE_DELIVERY_BACKOFF_SECONDS = [
    int(part) for part in env_str("CAREGATE_DELIVERY_BACKOFF_SECONDS", "5,30").split(",") if part
]
# A delivery still "sending" this long after its attempt began belongs to a worker that
# died: the sweep retries it (caregate/delivery/tasks.py). 0: twice the longest provider
# timeout plus 10 s (30 s with the defaults, the email-login code's whole life).
CAREGATE_DELIVERY_LEASE_SECONDS = env_int("CAREGATE_DELIVERY_LEASE_SECONDS", 0)

# --- branding -------------------------------------------------------------------------
CAREGATE_BRAND_NAME = env_str("CAREGATE_BRAND_NAME", "Caregate")
CAREGATE_PORTAL_NAME = env_str("CAREGATE_PORTAL_NAME", "Caregate Provider Portal")
CAREGATE_SUPPORT_PHONE = env_str("CAREGATE_SUPPORT_PHONE", "1-800-555-0100")
CAREGATE_INTERNAL_EMAIL_DOMAIN = env_str("CAREGATE_INTERNAL_EMAIL_DOMAIN")
# Staff single sign-on (OpenID Connect, caregate/staff/staff_login.py): the staff column of
# the login page shows only when an issuer and a client are configured.
CAREGATE_OIDC_ISSUER = env_str("CAREGATE_OIDC_ISSUER").rstrip("/")
CAREGATE_OIDC_CLIENT_ID = env_str("CAREGATE_OIDC_CLIENT_ID")
CAREGATE_OIDC_CLIENT_SECRET = env_str("CAREGATE_OIDC_CLIENT_SECRET")
CAREGATE_OIDC_SCOPES = env_str("CAREGATE_OIDC_SCOPES", "openid email profile")
# The ID-token claim holding the staff member's groups (Entra ID: "groups" or "roles").
CAREGATE_OIDC_ROLES_CLAIM = env_str("CAREGATE_OIDC_ROLES_CLAIM", "groups")
# group=role pairs, e.g. "caregate-support=support,caregate-staff=staff" (staff/roles.py).
CAREGATE_OIDC_ROLE_MAP = env_str("CAREGATE_OIDC_ROLE_MAP")
# MFA is the identity provider's: refuse ID tokens whose amr/acr do not show it.
CAREGATE_OIDC_REQUIRE_MFA = env_bool("CAREGATE_OIDC_REQUIRE_MFA", True)
CAREGATE_OIDC_MFA_AMR = env_str("CAREGATE_OIDC_MFA_AMR", "mfa")
CAREGATE_OIDC_MFA_ACR = env_str("CAREGATE_OIDC_MFA_ACR")
CAREGATE_OIDC_CLOCK_SKEW_SECONDS = env_int("CAREGATE_OIDC_CLOCK_SKEW_SECONDS", 60)
CAREGATE_OIDC_TIMEOUT_SECONDS = env_int("CAREGATE_OIDC_TIMEOUT_SECONDS", 5)
# Portal modules that live in other applications: hidden unless a URL is configured.
CAREGATE_CREATE_CASE_URL = env_str("CAREGATE_CREATE_CASE_URL")
CAREGATE_CONSUMERS_URL = env_str("CAREGATE_CONSUMERS_URL")
CAREGATE_REPORTS_URL = env_str("CAREGATE_REPORTS_URL")

# --- policy ---------------------------------------------------------------------------
CAREGATE_EMAIL_LOGIN_CODE_SECONDS = env_int("CAREGATE_EMAIL_LOGIN_CODE_SECONDS", 30)
CAREGATE_EMAIL_CODE_SECONDS = env_int("CAREGATE_EMAIL_CODE_SECONDS", 600)
CAREGATE_CODE_MAX_ATTEMPTS = env_int("CAREGATE_CODE_MAX_ATTEMPTS", 5)
CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = env_int("CAREGATE_CODE_RESEND_COOLDOWN_SECONDS", 10)
CAREGATE_FLOW_TIMEOUT_SECONDS = env_int("CAREGATE_FLOW_TIMEOUT_SECONDS", 900)
# Rate limits: (count, window seconds). Shared through the cache by all app processes.
CAREGATE_RATE_LIMITS = {
    "signin:account": (env_int("CAREGATE_SIGNIN_LIMIT_PER_ACCOUNT", 10), 900),
    "signin:client": (env_int("CAREGATE_SIGNIN_LIMIT_PER_CLIENT", 50), 900),
    # From a browser where the account completed a sign-in (security/devices.py): its own
    # budget in place of the account's, which strangers' guesses can use up.
    "signin:device": (env_int("CAREGATE_SIGNIN_LIMIT_PER_DEVICE", 10), 900),
    # ...and all of one account's such browsers together.
    "signin:account-devices": (env_int("CAREGATE_SIGNIN_LIMIT_PER_ACCOUNT_DEVICES", 30), 900),
    "code-send:account": (env_int("CAREGATE_SEND_LIMIT_PER_ACCOUNT", 10), 3600),
    "code-send:destination": (env_int("CAREGATE_SEND_LIMIT_PER_DESTINATION", 10), 3600),
    "code-send:client": (env_int("CAREGATE_SEND_LIMIT_PER_CLIENT", 30), 3600),
    "code-verify:client": (env_int("CAREGATE_VERIFY_LIMIT_PER_CLIENT", 60), 900),
    # Forgot password: its own budgets, so resets asked for someone else's address cannot
    # use up the codes that address's owner needs to sign in.
    "reset-send:account": (env_int("CAREGATE_RESET_SEND_LIMIT_PER_ACCOUNT", 5), 3600),
    "reset-send:destination": (env_int("CAREGATE_RESET_SEND_LIMIT_PER_DESTINATION", 5), 3600),
    "reset-send:client": (env_int("CAREGATE_RESET_SEND_LIMIT_PER_CLIENT", 20), 3600),
}

# --- the rest -------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("CAREGATE_TIME_ZONE", "America/New_York")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "caregate" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- operations: logs, metrics, probes (caregate/ops, docs/deployment.md) -------------
# JSON lines on stdout in production (one object per record, with the request id);
# readable text in development.
CAREGATE_LOG_FORMAT = env_str("CAREGATE_LOG_FORMAT", "json" if PRODUCTION else "text")
if CAREGATE_LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured("CAREGATE_LOG_FORMAT must be json or text")
LOGGING = logging_config(
    json_lines=CAREGATE_LOG_FORMAT == "json", level=env_str("CAREGATE_LOG_LEVEL", "INFO")
)
# /metrics answers only these networks (the scraper's address, not through a proxy) or a
# request with "Authorization: Bearer <CAREGATE_METRICS_TOKEN>"; never the public.
CAREGATE_METRICS_ALLOWED_IPS = env_list("CAREGATE_METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
CAREGATE_METRICS_TOKEN = env_str("CAREGATE_METRICS_TOKEN")
# Probes and the scraper talk plain http to the app process itself, not through the TLS
# proxy: an https redirect would fail them.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
CSRF_FAILURE_VIEW = "caregate.portal.views.csrf_failure"

# --- phone: SMS and voice (Section 3) -------------------------------------------------
CAREGATE_ALLOWED_COUNTRY_CODES = env_list("CAREGATE_ALLOWED_COUNTRY_CODES", ["1"])
CAREGATE_SMS_CODE_SECONDS = env_int("CAREGATE_SMS_CODE_SECONDS", 300)
# "code" (default): the page shows a number the user keys in the call, then #.
# "press-pound": the guide's behaviour, # alone approves. See README, Security.
CAREGATE_CALL_MODE = env_str("CAREGATE_CALL_MODE", "code")
if CAREGATE_CALL_MODE not in {"code", "press-pound"}:
    raise ImproperlyConfigured("CAREGATE_CALL_MODE must be 'code' or 'press-pound'")
CAREGATE_CALL_TIMEOUT_SECONDS = env_int("CAREGATE_CALL_TIMEOUT_SECONDS", 120)
_phone_backend = env_str("CAREGATE_PHONE_BACKEND", "twilio" if PRODUCTION else "outbox")
if _phone_backend not in {"outbox", "twilio"}:
    raise ImproperlyConfigured("CAREGATE_PHONE_BACKEND must be outbox or twilio")
if PRODUCTION and _phone_backend == "outbox":
    raise ImproperlyConfigured("the dev outbox cannot be used in production mode")
CAREGATE_PHONE_BACKEND = _phone_backend
TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env_str("TWILIO_AUTH_TOKEN")
TWILIO_FROM_NUMBER = env_str("TWILIO_FROM_NUMBER")
TWILIO_MESSAGING_SERVICE_SID = env_str("TWILIO_MESSAGING_SERVICE_SID")
TWILIO_TIMEOUT_SECONDS = env_int("TWILIO_TIMEOUT_SECONDS", 10)
# Where users and Twilio reach this deployment: emailed links are built from it, and TwiML
# and status callbacks are signed against it. Required in production (checked below);
# `make run` sets it from PORT, so the development default only serves a bare runserver.
CAREGATE_PUBLIC_BASE_URL = env_str(
    "CAREGATE_PUBLIC_BASE_URL", "" if PRODUCTION else "http://127.0.0.1:8000"
).rstrip("/")
# SMS-pumping budgets: sends and calls per number, per account, per client address, per hour.
CAREGATE_RATE_LIMITS.update(
    {
        "phone-send:destination": (env_int("CAREGATE_PHONE_LIMIT_PER_NUMBER", 5), 3600),
        "phone-send:account": (env_int("CAREGATE_PHONE_LIMIT_PER_ACCOUNT", 8), 3600),
        "phone-send:client": (env_int("CAREGATE_PHONE_LIMIT_PER_CLIENT", 20), 3600),
        # All sends and calls to numbers being enrolled together (not sign-ins to a
        # number on record): what SMS pumping through many accounts could cost an hour.
        "phone-send:new-numbers": (env_int("CAREGATE_PHONE_LIMIT_NEW_NUMBERS", 300), 3600),
    }
)

# --- Remember Me (Section 5) ----------------------------------------------------------
CAREGATE_REMEMBER_ME_SECONDS = env_int("CAREGATE_REMEMBER_ME_HOURS", 4) * 3600
CAREGATE_REMEMBER_COOKIE = "caregate_remember"
# The device cookie (caregate/security/devices.py): which sign-in budget a browser's
# password attempts count against. Opens nothing by itself.
CAREGATE_DEVICE_COOKIE = "caregate_device"
CAREGATE_DEVICE_COOKIE_SECONDS = env_int("CAREGATE_DEVICE_COOKIE_DAYS", 90) * 86400

# --- registration (Sections 1 and 2, and the registration helpers) -------------------
CAREGATE_REGISTRATION_LINK_SECONDS = env_int("CAREGATE_REGISTRATION_LINK_MINUTES", 20) * 60
CAREGATE_REGISTRATION_CODE_LABEL = env_str(
    "CAREGATE_REGISTRATION_CODE_LABEL", "PROVIDER REGISTRATION CODE"
)
CAREGATE_RATE_LIMITS.update(
    {
        "registration:client": (env_int("CAREGATE_REGISTRATION_LIMIT_PER_CLIENT", 20), 3600),
        "registration:npi": (env_int("CAREGATE_REGISTRATION_LIMIT_PER_NPI", 10), 3600),
        "registration:npi-all": (env_int("CAREGATE_REGISTRATION_LIMIT_PER_NPI_ALL", 100), 3600),
        "link-request:client": (env_int("CAREGATE_LINK_LIMIT_PER_CLIENT", 10), 3600),
        "link-request:account": (env_int("CAREGATE_LINK_LIMIT_PER_ACCOUNT", 3), 3600),
        # "This username is not available" answers an existence question: budget them.
        "availability:client": (env_int("CAREGATE_AVAILABILITY_LIMIT_PER_CLIENT", 30), 3600),
        "availability:flow": (env_int("CAREGATE_AVAILABILITY_LIMIT_PER_FLOW", 10), 3600),
        # The note to an address that already has an account, when someone registers with it.
        "registration-notice:destination": (
            env_int("CAREGATE_REGISTRATION_NOTICE_LIMIT_PER_ADDRESS", 3),
            3600,
        ),
    }
)

# --- stronger factors (issue #11: caregate/factors, caregate/passkeys) ----------------
# Second factors the deployment allows, by key. The guides' two are "email" and "phone".
CAREGATE_SECOND_FACTORS = env_list(
    "CAREGATE_SECOND_FACTORS", ["email", "phone", "authenticator-app", "recovery-code", "passkey"]
)
# Authenticator-app secrets are stored encrypted (Fernet) with this key; empty: a key
# derived from SECRET_KEY, so a copy of the database alone does not reveal them.
CAREGATE_FACTOR_ENCRYPTION_KEY = env_str("CAREGATE_FACTOR_ENCRYPTION_KEY")
CAREGATE_TOTP_ISSUER = env_str("CAREGATE_TOTP_ISSUER", "Caregate Provider Portal")
CAREGATE_RECOVERY_CODE_COUNT = env_int("CAREGATE_RECOVERY_CODE_COUNT", 10)
# WebAuthn: the relying party id is the site's registrable domain (never an IP address),
# the origins the full scheme://host[:port] the browser shows.
CAREGATE_PASSKEY_LOGIN = env_bool("CAREGATE_PASSKEY_LOGIN", False)  # LOGIN WITH PASSKEY
CAREGATE_WEBAUTHN_RP_ID = env_str("CAREGATE_WEBAUTHN_RP_ID", "localhost")
CAREGATE_WEBAUTHN_RP_NAME = env_str("CAREGATE_WEBAUTHN_RP_NAME", CAREGATE_PORTAL_NAME)
CAREGATE_WEBAUTHN_ORIGINS = env_list("CAREGATE_WEBAUTHN_ORIGINS", ["http://localhost:8000"])
CAREGATE_WEBAUTHN_ATTESTATION = env_str("CAREGATE_WEBAUTHN_ATTESTATION", "none")
CAREGATE_WEBAUTHN_CHALLENGE_SECONDS = env_int("CAREGATE_WEBAUTHN_CHALLENGE_SECONDS", 300)
# Adding a passkey needs a full sign-in (not Remember Me) at most this long ago.
CAREGATE_PASSKEY_REAUTH_SECONDS = env_int("CAREGATE_PASSKEY_REAUTH_SECONDS", 600)
# Authenticator-app and recovery codes checked per account (from any address), per 15 min:
# a TOTP code has three valid values at a time, so guesses are limited per account.
# The factor policy (caregate/factors/policy.py). "aal2": email is no second factor,
# administrators need a phishing-resistant factor (passkey), staff a phishing-resistant
# amr; "standard": only what the two lists below ask.
from caregate.factors.policy_settings import policy_problems  # noqa: E402 (pure)

CAREGATE_FACTOR_PROFILE = env_str("CAREGATE_FACTOR_PROFILE", "standard")
# Factor keys, any one of which an organization administrator must have enrolled, or
# "phishing-resistant"; empty: none (under "aal2": phishing-resistant).
CAREGATE_FACTORS_REQUIRED_FOR_ADMINS = env_list("CAREGATE_FACTORS_REQUIRED_FOR_ADMINS", [])
# Days from an administrator's first sign-in under the requirement during which the
# sign-in only asks them to enrol; after them the portal is closed until they do.
CAREGATE_FACTOR_GRACE_DAYS = env_int("CAREGATE_FACTOR_GRACE_DAYS", 14)
# ID-token amr values, any one of which a staff sign-in must show; empty: none (under
# "aal2": phr, phrh or hwk, the phishing-resistant ones).
CAREGATE_STAFF_REQUIRED_AMR = env_list("CAREGATE_STAFF_REQUIRED_AMR", [])
_policy_problems = policy_problems(
    profile=CAREGATE_FACTOR_PROFILE,
    allowed=CAREGATE_SECOND_FACTORS,
    admins=CAREGATE_FACTORS_REQUIRED_FOR_ADMINS,
    grace_days=CAREGATE_FACTOR_GRACE_DAYS,
)
if _policy_problems:
    raise ImproperlyConfigured("; ".join(_policy_problems))
CAREGATE_RATE_LIMITS["factor-verify:account"] = (
    env_int("CAREGATE_FACTOR_VERIFY_LIMIT_PER_ACCOUNT", 10),
    900,
)

# --- production refuses unsafe settings (caregate/security/checks.py) -----------------
_oidc_problems = oidc_problems(
    issuer=CAREGATE_OIDC_ISSUER,
    client_id=CAREGATE_OIDC_CLIENT_ID,
    role_map=CAREGATE_OIDC_ROLE_MAP,
    internal_domain=CAREGATE_INTERNAL_EMAIL_DOMAIN,
    production=PRODUCTION,
)
if _oidc_problems:
    raise ImproperlyConfigured("; ".join(_oidc_problems))
if PRODUCTION:
    _problems = production_problems(
        secret_key=SECRET_KEY,
        redis_url=REDIS_URL,
        allow_local_cache=CAREGATE_ALLOW_LOCAL_CACHE,
        email_backend=_email_backend,
        email_host=EMAIL_HOST,
        email_use_tls=EMAIL_USE_TLS,
        email_use_ssl=EMAIL_USE_SSL,
        public_base_url=CAREGATE_PUBLIC_BASE_URL,
    )
    if _problems:
        raise ImproperlyConfigured("; ".join(_problems))
