"""A URL configuration without the project's names (tests/test_cached_url.py)."""

urlpatterns: list = []
