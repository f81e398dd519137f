from django.apps import AppConfig


class FactorsConfig(AppConfig):
    """Second factors beyond the guides' phone and email (issue #11): the authenticator
    app (TOTP), recovery codes, and the factor choice at sign-in ("Try another way")."""

    name = "caregate.factors"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here: these modules import models, which cannot load before the apps.
        from caregate.accounts.signals import registration_reset  # noqa: PLC0415
        from caregate.factors import receivers, recovery, registry, totp  # noqa: PLC0415
        from caregate.factors.stages import AuthenticatorCode, RecoveryCodeEntry  # noqa: PLC0415

        registration_reset.connect(receivers.clear_factors, dispatch_uid="factors-reset")
        registry.register(
            registry.SecondFactor(
                key="authenticator-app",
                label="Enter a code from my authenticator app",
                stage=AuthenticatorCode(),
                enrolled=totp.enrolled,
                strength=STRENGTH_APP,
            )
        )
        registry.register(
            registry.SecondFactor(
                key=recovery.KEY,
                label="Enter a recovery code",
                stage=RecoveryCodeEntry(),
                enrolled=recovery.enrolled,
                strength=STRENGTH_RECOVERY,
            )
        )


# The guides' factors are email (10) and phone (20) (caregate/flows/stages/factor_choice.py).
# A recovery code is a last resort, never what a password reset asks for.
STRENGTH_APP = 30
STRENGTH_RECOVERY = 5
