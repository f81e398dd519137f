"""URLs of caregate.factors (Setup → My Account pages; included from caregate/urls.py)."""

from django.urls import path

from caregate.factors import policy_views, views

app_name = "factors"
urlpatterns = [
    path("account/authenticator/set-up/", views.start_add_app, name="add-app"),
    path("account/authenticator/remove/", views.remove_app, name="remove-app"),
    path("account/recovery-codes/new/", views.start_new_codes, name="new-codes"),
    path("account/recovery-codes/", views.recovery_offer, name="recovery-offer"),
    # The factor policy (caregate/factors/policy.py): the grace prompt and the enrolment gate.
    path("account/sign-in-methods/add-now/", policy_views.prompt, name="policy-prompt"),
    path("account/sign-in-methods/required/", policy_views.required, name="policy-required"),
]
