from django.urls import path

from caregate.portal import views

app_name = "portal"
urlpatterns = [
    path("", views.login_page, name="login"),
    path("login/start/", views.start_login, name="start-login"),
    path("logout/", views.sign_out, name="logout"),
    path("home/", views.home, name="home"),
    path("cases/", views.cases, name="cases"),
    path("messages/", views.message_center, name="messages"),
    path("help/", views.help_page, name="help"),
    path("terms/", views.terms, name="terms"),
    path("unavailable/<slug:feature>/", views.not_available, name="not-available"),
    # Setup → My Account and Setup → Manage Users (issue #8): replaced by their views.
    path("setup/my-account/", views.not_available, {"feature": "my-account"}, name="my-account"),
    path("setup/users/", views.not_available, {"feature": "manage-users"}, name="manage-users"),
]
