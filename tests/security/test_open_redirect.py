"""Open redirect: the menu's module pages go only to the addresses the operator set."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/modules/evil/",
        "/modules/https:--evil.example/",
        "/modules/..%2F..%2Fevil/",
        "/modules/reports/?next=https://evil.example/",
        "/modules/reports/?url=//evil.example/",
    ],
)
def test_module_page_redirects_only_to_the_configured_address(signed_in, settings, path):
    settings.CAREGATE_REPORTS_URL = "https://reports.example/"
    response = signed_in.get(path)
    assert response.status_code in {302, 404}
    if response.status_code == 302:
        assert response.url == "https://reports.example/"


def test_unconfigured_module_never_redirects_even_when_asked(signed_in, settings):
    settings.CAREGATE_CONSUMERS_URL = ""
    response = signed_in.get("/modules/consumers/", {"next": "https://evil.example/"})
    assert response.status_code == 200
    assert "https://evil.example/" not in response.content.decode()


def test_module_pages_reveal_nothing_before_sign_in(client, settings):
    """An anonymous visitor learns neither the module addresses nor that they are set."""
    settings.CAREGATE_REPORTS_URL = "https://reports.internal.example/"
    response = client.get("/modules/reports/")
    assert response.status_code == 302 and response.url.startswith("/?next=")
