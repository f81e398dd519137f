from django.apps import AppConfig


class FlowsConfig(AppConfig):
    name = "caregate.flows"
    label = "flows"
