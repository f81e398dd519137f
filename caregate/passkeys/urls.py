"""URLs of caregate.passkeys (Setup → My Account pages; included from caregate/urls.py)."""

from django.urls import path

from caregate.passkeys import views

app_name = "passkeys"
urlpatterns = [
    path("account/passkeys/", views.passkey_list, name="list"),
    path("account/passkeys/add/", views.add, name="add"),
    path("account/passkeys/add/verify/", views.start_add, name="start-add"),
    path("account/passkeys/<int:passkey_id>/rename/", views.rename, name="rename"),
    path("account/passkeys/<int:passkey_id>/remove/", views.remove, name="remove"),
    # LOGIN WITH PASSKEY (its screen is the passkey-login flow's stage).
    path("login/passkey/", views.start_login, name="login-start"),
]
