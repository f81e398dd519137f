"""WSGI entry point (gunicorn caregate.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "caregate.settings")
application = get_wsgi_application()
