"""URLs of caregate.factors (Setup → My Account pages; included from caregate/urls.py)."""

from django.urls import URLPattern

app_name = "factors"
urlpatterns: list[URLPattern] = []
