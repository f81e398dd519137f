from django.apps import AppConfig


class PasskeysConfig(AppConfig):
    """Passkeys (WebAuthn, issue #11): enrolled under Setup → My Account, used as a second
    factor after the password and, where the deployment enables it, by LOGIN WITH PASSKEY."""

    name = "caregate.passkeys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here: these modules import models, which cannot load before the apps.
        from caregate.accounts.signals import registration_reset  # noqa: PLC0415
        from caregate.factors import registry  # noqa: PLC0415
        from caregate.flows.stages.passkey import PasskeyAssertion  # noqa: PLC0415
        from caregate.passkeys import receivers  # noqa: PLC0415

        registration_reset.connect(receivers.remove_all, dispatch_uid="passkeys.reset")
        registry.register(
            registry.SecondFactor(
                key="passkey",
                label="Use a passkey",
                stage=PasskeyAssertion(discoverable=False),
                enrolled=receivers.has_passkey,
                phishing_resistant=True,
                # The strongest factor: phishing-resistant and verifying the user.
                strength=100,
            )
        )
