"""URLs of caregate.passkeys (Setup → My Account pages; included from caregate/urls.py)."""

from django.urls import URLPattern

app_name = "passkeys"
urlpatterns: list[URLPattern] = []
