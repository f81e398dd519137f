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
        # Imported here: the backend module imports models, which cannot load before the apps.
        from django_tasks_db.backend import DatabaseBackend  # noqa: PLC0415
        from django_tasks_db.compat import task_enqueued  # noqa: PLC0415

        from caregate.delivery.wakeup import notify_worker  # noqa: PLC0415

        # Only the database backend's tasks wait for a worker (the immediate backend runs
        # them inside enqueue()).
        task_enqueued.connect(notify_worker, sender=DatabaseBackend, dispatch_uid="wake-worker")
