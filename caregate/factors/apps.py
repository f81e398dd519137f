from django.apps import AppConfig


class FactorsConfig(AppConfig):
    """Second factors beyond the guides' phone and email (issue #11): the authenticator
    app (TOTP), recovery codes, and the factor choice at sign-in ("Try another way")."""

    name = "caregate.factors"
    default_auto_field = "django.db.models.BigAutoField"
