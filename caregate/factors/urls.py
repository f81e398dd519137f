"""URLs of caregate.factors (Setup → My Account pages; included from caregate/urls.py)."""

from django.urls import path

from caregate.factors import views

app_name = "factors"
urlpatterns = [
    path("account/authenticator/set-up/", views.start_add_app, name="add-app"),
    path("account/authenticator/remove/", views.remove_app, name="remove-app"),
    path("account/recovery-codes/new/", views.start_new_codes, name="new-codes"),
    path("account/recovery-codes/", views.recovery_offer, name="recovery-offer"),
]
