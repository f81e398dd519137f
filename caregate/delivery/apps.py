from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from caregate.security.checks import tasks_backend_problem  # pure: loads no model


class DeliveryConfig(AppConfig):
    name = "caregate.delivery"
    label = "delivery"

    def ready(self) -> None:
        # A start-up refusal like settings.py's (caregate/security/checks.py): every
        # process that loads Django (gunicorn, db_worker, manage.py) stops here.
        if settings.PRODUCTION and (problem := tasks_backend_problem(settings.TASKS)):
            raise ImproperlyConfigured(problem)
