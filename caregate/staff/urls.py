"""The operator staff's addresses (namespace "staff"): the support console, ``/support/``.

Included at the root (``caregate/urls.py``), so each staff feature spells its own prefix.
"""

from django.urls import path

from caregate.staff import support_console

app_name = "staff"
urlpatterns = [
    # staff LOGIN routes are added by staff_login.py's session
    path("support/", support_console.search_page, name="support"),
    path("support/users/<int:user_id>/", support_console.user_detail, name="support-user"),
    path(
        "support/users/<int:user_id>/<slug:action>/",
        support_console.confirm_action,
        name="support-action",
    ),
]
