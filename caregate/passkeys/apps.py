from django.apps import AppConfig


class PasskeysConfig(AppConfig):
    """Passkeys (WebAuthn, issue #11): enrolled under Setup → My Account, used as a second
    factor after the password and, where the deployment enables it, by LOGIN WITH PASSKEY."""

    name = "caregate.passkeys"
    default_auto_field = "django.db.models.BigAutoField"
