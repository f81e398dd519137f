"""URLs. The flow stages come first: most requests of a sign-in are theirs, and their
pattern matches only a registered flow's name (caregate/flows/urls.py)."""

from django.urls import include, path

from caregate.flows import registration_error, registration_links, trouble_logging_in
from caregate.flows import views as flow_views
from caregate.ops import health, metrics
from caregate.staff import staff_login

urlpatterns = [
    path("", include("caregate.flows.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Refused unless from CAREGATE_METRICS_ALLOWED_IPS or with CAREGATE_METRICS_TOKEN.
    path("metrics", metrics.metrics_view, name="metrics"),
    path("", include("caregate.delivery.urls")),
    path("", include("caregate.portal.urls")),
    # The operator's staff: the support console (/support/).
    path("", include("caregate.staff.urls")),
    # Issue #11: the authenticator app and recovery codes, passkeys (Setup → My Account).
    path("", include("caregate.factors.urls")),
    path("", include("caregate.passkeys.urls")),
    # Section 2 and Section 1 start from the login page's links.
    path("register/", flow_views.start, {"flow_name": "register"}, name="register-start"),
    path(
        "mfa-registration/",
        flow_views.start,
        {"flow_name": "mfa-registration"},
        name="mfa-registration-start",
    ),
    path(
        "forgot-password/",
        flow_views.start,
        {"flow_name": "forgot-password"},
        name="forgot-password-start",
    ),
    path(
        "registration-link/<str:token>/",
        registration_links.link_landing,
        name="registration-link",
    ),
    path(
        "registration-link/",
        registration_links.link_continue,
        name="registration-link-continue",
    ),
    # The staff LOGIN (its callback is its flow's stage, /staff-login/identity-provider/).
    path("staff/login/", staff_login.start, name="staff-login"),
    path("registration-error/", registration_error.error_page, name="registration-error"),
    path("registration-error/reset/", registration_error.reset, name="registration-reset"),
    path("trouble-logging-in/", trouble_logging_in.trouble, name="trouble"),
    path("trouble-logging-in/help/", trouble_logging_in.mfa_help, name="mfa-help"),
]
