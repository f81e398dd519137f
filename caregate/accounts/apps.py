from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "caregate.accounts"
    label = "accounts"
