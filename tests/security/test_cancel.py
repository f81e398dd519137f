"""Cancel is a POST: another site's link, image or prefetch cannot throw away a sign-in or a
registration in progress (a known trade-off of issue #7's review until 2026-12-02).

Every flow page carries one Cancel form (``id="flow-cancel"``, CSRF token included, in
flow_base.html); the other buttons that cancel ("< LOGIN", "Back to the login page") belong
to it by ``form="flow-cancel"``. A GET of /<flow>/cancel/ goes back to where the flow
starts and leaves the attempt as it was.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client

from caregate.flows import keys
from tests.conftest import PASSWORD
from tests.test_my_account import CHANGE_PHONE, PHONE_CURRENT, signed_in_as

pytestmark = pytest.mark.django_db
CODE_PAGE = "/email-login/email-code/"
TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def past_the_password(client: Client, user) -> None:
    client.post("/login/start/", {"method": "email"})
    response = client.post(
        "/email-login/credentials/", {"email": user.email, "password": PASSWORD}
    )
    assert response.status_code == 302 and response.url == CODE_PAGE


def attempt(client: Client, flow: str) -> str | None:
    return client.session.get(keys.FLOWS, {}).get(flow)


def cancel_form(page: str) -> str:
    match = re.search(r'<form id="flow-cancel".*?</form>', page, re.DOTALL)
    assert match, "no Cancel form on the page"
    return match.group(0)


def test_a_cross_site_get_of_cancel_leaves_the_sign_in_where_it_was(client, email_user):
    past_the_password(client, email_user)
    before = attempt(client, "email-login")
    response = client.get("/email-login/cancel/", HTTP_SEC_FETCH_SITE="cross-site")
    assert response.status_code == 302 and response.url == "/"
    assert attempt(client, "email-login") == before
    # The code page is still the one reached: nothing to do again.
    page = client.get(CODE_PAGE)
    assert page.status_code == 200
    assert b'name="action" value="send"' in page.content


@pytest.mark.parametrize("method", ["head", "put", "delete", "options", "patch"])
def test_other_methods_are_refused_and_forget_nothing(client, email_user, method):
    past_the_password(client, email_user)
    before = attempt(client, "email-login")
    response = getattr(client, method)("/email-login/cancel/")
    assert response.status_code == 405
    assert attempt(client, "email-login") == before


def test_a_cancel_post_without_the_token_is_refused_and_forgets_nothing(email_user):
    client = Client(enforce_csrf_checks=True)
    page = client.get("/").content.decode()
    token = TOKEN.search(page).group(1)
    client.post("/login/start/", {"method": "email", "csrfmiddlewaretoken": token})
    before = attempt(client, "email-login")
    assert before
    response = client.post("/email-login/cancel/")  # the cookie alone, as a forged form has
    assert response.status_code == 403
    assert attempt(client, "email-login") == before
    # The page's own form carries its token, and that one cancels.
    page = client.get("/email-login/credentials/").content.decode()
    form = cancel_form(page)
    assert 'method="post"' in form and 'action="/email-login/cancel/"' in form
    response = client.post(
        "/email-login/cancel/", {"csrfmiddlewaretoken": TOKEN.search(form).group(1)}
    )
    assert response.status_code == 302 and response.url == "/"
    assert attempt(client, "email-login") is None


def test_a_cancel_post_forgets_the_attempt_for_good(client, email_user):
    past_the_password(client, email_user)
    response = client.post("/email-login/cancel/")
    assert response.status_code == 302 and response.url == "/"
    assert attempt(client, "email-login") is None
    # The code page of the cancelled attempt is gone, and a second Cancel is harmless.
    response = client.get(CODE_PAGE)
    assert response.status_code == 302 and response.url == "/"
    assert client.post("/email-login/cancel/").status_code == 302


def test_cancelling_one_flow_leaves_another_flows_attempt(client, email_user):
    past_the_password(client, email_user)
    client.get("/forgot-password/")
    assert attempt(client, "forgot-password")
    client.post("/forgot-password/cancel/")
    assert attempt(client, "forgot-password") is None
    assert client.get(CODE_PAGE).status_code == 200


@pytest.mark.parametrize("flow", ["register", "mfa-registration", "forgot-password"])
def test_a_get_of_cancel_keeps_every_link_started_flow(client, flow):
    client.get(f"/{flow}/")
    before = attempt(client, flow)
    assert before
    client.get(f"/{flow}/cancel/")
    assert attempt(client, flow) == before
    client.post(f"/{flow}/cancel/")
    assert attempt(client, flow) is None


def test_my_account_changes_are_kept_by_a_get_of_cancel(make_user):
    client = signed_in_as(make_user(mfa="phone"))
    client.post(CHANGE_PHONE)
    client.get("/change-phone/cancel/")
    assert client.get(PHONE_CURRENT).status_code == 200
    client.post("/change-phone/cancel/")
    assert client.get(PHONE_CURRENT).status_code == 302


@pytest.mark.parametrize(
    "path, label",
    [("/register/organization/", "&lt; LOGIN"), ("/email-login/credentials/", "Cancel")],
)
def test_no_page_cancels_by_a_link(client, path, label):
    client.post("/login/start/", {"method": "email"})
    client.get("/register/")
    page = client.get(path).content.decode()
    assert "/cancel/" in page
    assert not re.search(r'href="[^"]*/cancel/', page)
    assert label in page


def test_enter_in_a_registration_field_submits_next_not_cancel(client, org):
    """Implicit submission (Enter in a field) uses the form's first own submit button:
    "< LOGIN" comes first on the page, so it must belong to the Cancel form instead."""
    page = client.get("/register/", follow=True).content.decode()
    stage_form = re.search(r'<form method="post" novalidate>(.*?)</form>', page, re.DOTALL)
    buttons = re.findall(r"<button[^>]*>[^<]*</button>", stage_form.group(1))
    own = [b for b in buttons if 'form="' not in b and 'type="button"' not in b]
    assert own and "NEXT" in own[0]
    assert any('form="flow-cancel"' in b and "LOGIN" in b for b in buttons)
    # And NEXT posts the organization, as Enter would.
    response = client.post(
        "/register/organization/", {"npi": org.npi, "registration_code": "REG-CODE-1"}
    )
    assert response.status_code == 302 and response.url == "/register/user-info/"
