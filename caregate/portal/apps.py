from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "caregate.portal"
    label = "portal"
