"""Start-up refusals for unsafe production configuration.

Plain functions over plain values, so settings.py can call them before Django is set up
(and stop the process with ImproperlyConfigured), and tests can call them directly.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import CommandError

from caregate.staff.roles import parse_role_map  # pure: reads no setting

MIN_SECRET_KEY_LENGTH = 50  # Django's own deploy check (security.W009) asks for 50
INSECURE_KEY_PREFIX = "django-insecure-"  # what startproject writes into a fresh project
LOCAL_SMTP_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def secret_key_problem(key: str) -> str:
    if len(key) < MIN_SECRET_KEY_LENGTH:
        return f"CAREGATE_SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters"
    if key.startswith(INSECURE_KEY_PREFIX):
        return "CAREGATE_SECRET_KEY must not be a generated django-insecure key"
    if len(set(key)) < 5:
        return "CAREGATE_SECRET_KEY must not repeat a few characters"
    return ""


def cache_problem(redis_url: str, allow_local_cache: bool) -> str:
    # Without a shared cache each worker counts its own rate limits (N workers allow N times
    # the attempts) and sessions are not shared: only an explicit single-process deployment
    # may run that way.
    if redis_url or allow_local_cache:
        return ""
    return (
        "REDIS_URL is required in production mode (rate limits must be shared by every "
        "process); set CAREGATE_ALLOW_LOCAL_CACHE=true only for a single-process deployment"
    )


def smtp_problem(backend: str, host: str, use_tls: bool, use_ssl: bool) -> str:
    # Codes and registration links travel in these emails: never in clear text over a network.
    if backend != "smtp" or use_tls or use_ssl or host.strip().lower() in LOCAL_SMTP_HOSTS:
        return ""
    return (
        "EMAIL_USE_TLS or EMAIL_USE_SSL is required in production mode for an SMTP host "
        "other than localhost"
    )


def public_base_url_problem(url: str) -> str:
    # Emailed links and Twilio's signed webhooks are built from it: a guessed default would
    # send users to a dead address, and plain http would expose the link tokens.
    if not url:
        return "CAREGATE_PUBLIC_BASE_URL is required in production mode"
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.path not in {"", "/"}:
        return (
            "CAREGATE_PUBLIC_BASE_URL must be an https:// origin, e.g. https://portal.example.org"
        )
    return ""


def oidc_problems(
    *, issuer: str, client_id: str, role_map: str, internal_domain: str, production: bool
) -> list[str]:
    """Staff LOGIN settings that cannot work, or are unsafe in production."""
    problems: list[str] = []
    try:
        mapped = parse_role_map(role_map)
    except ValueError as error:
        problems.append(str(error))
        mapped = {"?": frozenset()}
    if not issuer:
        return problems
    if not client_id:
        problems.append("CAREGATE_OIDC_CLIENT_ID is required with CAREGATE_OIDC_ISSUER")
    if not mapped:
        problems.append("CAREGATE_OIDC_ROLE_MAP is empty: no staff member could sign in")
    if production:
        # The discovery document and keys decide whose tokens are believed: never over http.
        if urlsplit(issuer).scheme != "https":
            problems.append("CAREGATE_OIDC_ISSUER must be an https:// URL in production mode")
        if not internal_domain:
            problems.append(
                "CAREGATE_INTERNAL_EMAIL_DOMAIN is required with staff LOGIN in production "
                "mode (staff addresses must be kept out of the customer sign-in)"
            )
    return problems


# Task backends that would not send from a worker: the immediate one sends inside the
# request, the dummy one never sends at all.
INLINE_TASK_BACKENDS = frozenset(
    {
        "django_tasks.backends.immediate.ImmediateBackend",
        "django_tasks.backends.dummy.DummyBackend",
        "django.tasks.backends.immediate.ImmediateBackend",
        "django.tasks.backends.dummy.DummyBackend",
    }
)


def tasks_backend_problem(tasks: dict[str, dict[str, object]]) -> str:
    """The TASKS setting's default backend must hand deliveries to a worker.

    No opt-in, on purpose: with the immediate backend every email, SMS and call is sent
    inside the request, so an answer's time again tells whether a message went out
    (Forgot password and Registration Error's Reset would show whether an account exists)
    and retries follow each other at once instead of waiting out the backoff. A
    deployment with no room for a worker can run ``manage.py db_worker`` next to its one
    app process.
    """
    backend = str(tasks.get("default", {}).get("BACKEND", ""))
    if backend in INLINE_TASK_BACKENDS:
        return (
            f"the {backend.rsplit('.', 1)[-1]} tasks backend cannot be used in production "
            "mode (it sends inside the request, or never): set CAREGATE_TASKS_BACKEND="
            "database and run manage.py db_worker"
        )
    return ""


def production_problems(
    *,
    secret_key: str,
    redis_url: str,
    allow_local_cache: bool,
    email_backend: str,
    email_host: str,
    email_use_tls: bool,
    email_use_ssl: bool,
    public_base_url: str,
) -> list[str]:
    """Every reason the production configuration is unsafe (empty when it is fine)."""
    problems = [
        secret_key_problem(secret_key),
        cache_problem(redis_url, allow_local_cache),
        smtp_problem(email_backend, email_host, email_use_tls, email_use_ssl),
        public_base_url_problem(public_base_url),
    ]
    return [problem for problem in problems if problem]


def refuse_in_production(action: str) -> None:
    """Stop a development-only command (e.g. load_demo) in production mode.

    Demo accounts share one published password and registration code: in production they
    would be open doors.
    """
    if getattr(settings, "PRODUCTION", False):
        raise CommandError(f"{action} is not allowed in production mode")
