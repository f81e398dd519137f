from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "caregate.delivery"
    label = "delivery"
