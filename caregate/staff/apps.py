from django.apps import AppConfig


class StaffConfig(AppConfig):
    name = "caregate.staff"
    label = "staff"
