from django.apps import AppConfig


class VerificationConfig(AppConfig):
    name = "caregate.verification"
    label = "verification"
