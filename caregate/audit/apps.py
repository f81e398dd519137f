from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "caregate.audit"
    label = "audit"
