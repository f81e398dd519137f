from django.urls import path

from caregate.portal import manage_users, my_account, views

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
    path("setup/", views.setup, name="setup"),
    path("modules/<slug:slug>/", views.module, name="module"),
    # Setup → My Account and Setup → Manage Users (issue #8): replaced by their views.
    path("setup/my-account/", my_account.my_account, name="my-account"),
    path(
        "setup/my-account/change/<slug:what>/",
        my_account.start_change,
        name="my-account-change",
    ),
    path("setup/my-account/end-session/", my_account.end_session, name="my-account-end-session"),
    path("setup/my-account/end-browser/", my_account.end_browser, name="my-account-end-browser"),
    path("setup/users/", manage_users.user_list, name="manage-users"),
    path("setup/users/<int:user_id>/", manage_users.user_detail, name="manage-user"),
    path(
        "setup/users/<int:user_id>/<slug:action>/",
        manage_users.confirm_action,
        name="manage-user-action",
    ),
]
