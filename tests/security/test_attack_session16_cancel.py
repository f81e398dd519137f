"""Attacker review of session 16: Cancel as a POST (commit 98f8912).

Cancel used to be a GET link; now every flow page has one CSRF-checked POST form
(``id="flow-cancel"``, flow_base.html), the other cancelling buttons belong to it by
``form="flow-cancel"``, and a GET of /<flow>/cancel/ goes back without touching the
attempt. This file attacks that change: cross-site GET/HEAD/prefetch, forged POSTs,
Cancel racing the last step, other flows' and other users' attempts, every page's
Cancel form, Enter in every flow form that has a button before its submit button, and
the My Account flows.

Tests marked FINDING failed on the code of 98f8912 (each says what was wrong) and pass
since the fixes that followed: an address naming no stage of a flow goes back to the
stage reached instead of throwing the attempt away (engine.dispatch), and the buttons
shown before a page's main one ("Change", "Change number", "send a new code") belong to
a side form (flows/_side_actions.html), so Enter is the main button. The others pass
where the defence held.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.test import Client

from caregate.flows import keys
from caregate.flows.models import FlowInstance
from caregate.flows.stages.email_code import EmailCode
from caregate.flows.stages.organization import OrganizationStage
from tests.conftest import PASSWORD
from tests.phone_steps import sms_code
from tests.registration_steps import email_code, section1_login
from tests.test_my_account import CHANGE_EMAIL, CHANGE_PHONE, signed_in_as

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "caregate" / "templates"
STATIC = ROOT / "caregate" / "static"
CODE_PAGE = "/email-login/email-code/"
NEW_PHONE = "+12025550177"


@pytest.fixture(autouse=True)
def _no_cooldown(settings) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


# --- helpers ------------------------------------------------------------------------------


def attempt(client: Client, flow: str) -> str | None:
    return client.session.get(keys.FLOWS, {}).get(flow)


def row_revision(pointer: str) -> int | None:
    row = FlowInstance.objects.filter(pk=pointer).first()
    return row.revision if row is not None else None


def past_the_password(client: Client, user, flow: str = "email-login") -> None:
    method = "email" if flow == "email-login" else "phone"
    client.post("/login/start/", {"method": method})
    response = client.post(f"/{flow}/credentials/", {"email": user.email, "password": PASSWORD})
    assert response.status_code == 302, response
    assert attempt(client, flow)


def signed_in(client: Client) -> bool:
    return SESSION_KEY in client.session


def token_of(client: Client) -> str:
    """The CSRF secret in the client's cookie: Django accepts it as the form's token too
    (what a page's own form would carry, masked)."""
    return client.cookies["csrftoken"].value


class Page(HTMLParser):
    """Forms, their controls (with each control's form owner, as HTML decides it) and
    ids of one page, in tree order."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self.controls: list[dict] = []
        self.links: list[str] = []
        self.ids: list[str] = []
        self.nested_forms = 0
        self._open: dict | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if tag == "form":
            if self._open is not None:
                self.nested_forms += 1  # HTML ignores a nested form's start tag
                return
            form = {"key": a.get("id") or f"#{len(self.forms)}", **a}
            self.forms.append(form)
            self._open = form
            return
        if tag in {"button", "input", "select", "textarea"}:
            owner = a.get("form") or (self._open["key"] if self._open else None)
            kind = a.get("type", "submit" if tag == "button" else "text").lower()
            self.controls.append({"tag": tag, "type": kind, "owner": owner, **a})

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None

    def owner_of(self, field: str) -> str:
        for control in self.controls:
            if control.get("name") == field and control["type"] not in {"submit", "hidden"}:
                return control["owner"]
        raise AssertionError(f"no field {field!r} on the page")

    def default_button(self, form_key: str) -> dict | None:
        """The button Enter in a field of this form presses (HTML's implicit submission:
        the form's first submit button in tree order whose form owner is that form)."""
        for control in self.controls:
            is_submit = control["type"] in {"submit", "image"} and control["tag"] in {
                "button",
                "input",
            }
            if is_submit and control["owner"] == form_key:
                return control
        return None


def page_of(response) -> Page:
    assert response.status_code == 200, response
    return Page(response.content.decode())


def assert_one_good_cancel_form(response, flow: str) -> Page:
    page = page_of(response)
    cancels = [f for f in page.forms if f.get("id") == "flow-cancel"]
    assert len(cancels) == 1, "exactly one Cancel form"
    form = cancels[0]
    assert form.get("method", "").lower() == "post"
    assert form.get("action") == f"/{flow}/cancel/"
    assert page.nested_forms == 0, "a form nested in another form"
    own = [c for c in page.controls if c["owner"] == "flow-cancel"]
    assert any(c.get("name") == "csrfmiddlewaretoken" and c.get("value") for c in own)
    assert any(c["type"] == "submit" for c in own)
    duplicates = {i for i in page.ids if page.ids.count(i) > 1}
    assert not duplicates, f"duplicate ids: {duplicates}"
    assert not [h for h in page.links if "/cancel/" in h], "a cancelling link"
    # Every control naming a form names one that is on the page.
    keys_on_page = {f["key"] for f in page.forms}
    assert all(c["owner"] in keys_on_page for c in page.controls if c.get("form"))
    return page


# === FINDING 1: a cross-site GET still throws an attempt away ============================
# dispatch() answers a stage URL it does not know (index None) with restart(), which
# discards the attempt. Any GET of /<flow>/<anything>/ -- an <img>, a link, a prefetch
# from another site -- therefore does exactly what a GET of /<flow>/cancel/ no longer
# does. The fix of 98f8912 is bypassed by changing one path segment.


@pytest.mark.parametrize("stage", ["no-such-stage", "phone", "x"])
def test_finding_a_cross_site_get_of_an_unknown_stage_throws_the_sign_in_away(
    client, email_user, stage
):
    """FINDING (fails on 98f8912): GET /email-login/<unknown>/ discards the sign-in."""
    past_the_password(client, email_user)
    before = attempt(client, "email-login")
    client.get(
        f"/email-login/{stage}/",
        HTTP_SEC_FETCH_SITE="cross-site",
        HTTP_SEC_FETCH_DEST="image",
    )
    assert attempt(client, "email-login") == before
    assert row_revision(before) is not None, "the attempt's row was deleted by a GET"
    assert client.get(CODE_PAGE).status_code == 200


def test_finding_a_cross_site_get_of_an_unknown_stage_throws_a_registration_away(client, org):
    """FINDING (fails on 98f8912): the same for a registration past its first page."""
    client.get("/register/")
    response = client.post(
        "/register/organization/", {"npi": org.npi, "registration_code": "REG-CODE-1"}
    )
    assert response.status_code == 302 and response.url == "/register/user-info/"
    before = attempt(client, "register")
    client.get("/register/cancel-me/", HTTP_SEC_FETCH_SITE="cross-site")
    assert attempt(client, "register") == before
    assert client.get("/register/user-info/").status_code == 200


def test_finding_a_cross_site_get_of_an_unknown_stage_throws_a_my_account_change_away(
    make_user,
):
    """FINDING (fails on 98f8912): the same for a signed-in My Account change."""
    client = signed_in_as(make_user(mfa="email"))
    client.post(CHANGE_EMAIL)
    before = attempt(client, "change-email")
    assert before
    client.get("/change-email/zzz/", HTTP_SEC_FETCH_SITE="cross-site")
    assert attempt(client, "change-email") == before
    assert client.get("/change-email/current/").status_code == 200


# === FINDING 2: Enter in a code or password field presses "Change" =======================
# The commit moved "< LOGIN" out of the registration forms so that Enter is still NEXT,
# but other flow forms still have a button that throws progress away ("Change",
# "Change number") before their submit button. Enter in the code field (or the new
# password field) presses it: the code just sent (or the verified work email) is
# discarded. Checked in Chromium against `make run`: on /mfa-registration/email-code/
# Enter in "Verification code" posted action=change&code=... and the code field was gone.


def mfa_registration_to_email_code(client: Client, make_user) -> object:
    user = make_user(mfa="none", username="reg.user", email="reg.user@clinic.example")
    section1_login(client, user.username, PASSWORD)
    response = client.post("/mfa-registration/method/", {"method": "phone"})
    assert response.status_code == 302 and response.url == "/mfa-registration/email-code/"
    return user


def mfa_registration_to_password(client: Client, make_user) -> None:
    user = mfa_registration_to_email_code(client, make_user)
    client.post("/mfa-registration/email-code/", {"action": "send", "email": user.email})
    response = client.post(
        "/mfa-registration/email-code/", {"action": "verify", "code": email_code(user.email)}
    )
    assert response.status_code == 302 and response.url == "/mfa-registration/password/"


def mfa_registration_to_phone_code(client: Client, make_user) -> None:
    mfa_registration_to_password(client, make_user)
    new = "Brand-New-Passphrase-42"
    response = client.post(
        "/mfa-registration/password/",
        {"action": "create", "new_password": new, "confirm_password": new},
    )
    assert response.status_code == 302 and response.url == "/mfa-registration/phone/"
    client.post(
        "/mfa-registration/phone/",
        {"action": "sms", "country_code": "1", "phone_number": "202-555-0177"},
    )


def test_finding_enter_in_the_registration_code_field_presses_change(client, make_user):
    """FINDING (fails on 98f8912): MFA registration's email page, after Send: Enter in
    "Verification code" submits action=change (the code and address are thrown away)."""
    user = mfa_registration_to_email_code(client, make_user)
    client.post("/mfa-registration/email-code/", {"action": "send", "email": user.email})
    page = page_of(client.get("/mfa-registration/email-code/"))
    button = page.default_button(page.owner_of("code"))
    assert button is not None and button.get("value") == "verify", button


def test_finding_enter_in_the_new_password_field_presses_change(client, make_user):
    """FINDING (fails on 98f8912): "Create your password": Enter in New Password submits
    action=change, which goes Back to the email stage (the verified email is lost)."""
    mfa_registration_to_password(client, make_user)
    page = page_of(client.get("/mfa-registration/password/"))
    button = page.default_button(page.owner_of("new_password"))
    assert button is not None and button.get("value") == "create", button


def test_finding_enter_in_the_enrolment_sms_code_field_presses_change_number(client, make_user):
    """FINDING (fails on 98f8912): phone enrolment, after Send Code: Enter in the code
    field submits action=change-number (the code sent is discarded)."""
    mfa_registration_to_phone_code(client, make_user)
    assert sms_code(NEW_PHONE)
    page = page_of(client.get("/mfa-registration/phone/"))
    button = page.default_button(page.owner_of("code"))
    assert button is not None and button.get("value") == "verify-sms", button


def test_finding_enter_in_the_new_email_code_field_presses_change(make_user):
    """FINDING (fails on 98f8912): My Account → Change email, new address's code: Enter
    in the code field submits action=change."""
    user = make_user(mfa="email")
    client = signed_in_as(user)
    client.post(CHANGE_EMAIL)
    client.post("/change-email/current/", {"action": "send"})
    client.post("/change-email/current/", {"action": "verify", "code": email_code(user.email)})
    client.post("/change-email/current/", {"action": "continue"})
    client.post("/change-email/new-email/", {"action": "send", "email": "new@clinic.example"})
    page = page_of(client.get("/change-email/new-email/"))
    button = page.default_button(page.owner_of("code"))
    assert button is not None and button.get("value") == "verify", button


# === FINDING 3: Enter in the sign-in SMS code field sends a new code =====================
# Not a cancelling button, but the same Enter-key class in the flow forms the commit
# looked at: on LOGIN WITH PHONE after Send Code, "send a new code" (action=sms) is the
# form's first submit button, before the code field. Checked in Chromium against
# `make run`: Enter in the code field posted action=sms&code=123456 -- a new SMS (or a
# "Please wait" refusal) instead of Verify Code; each Enter is a paid SMS.


def test_finding_enter_in_the_phone_sign_in_code_field_sends_a_new_code(client, make_user):
    """FINDING (fails on 98f8912): Enter in the phone sign-in code field = action=sms."""
    user = make_user(mfa="phone", phone="+12025559885")
    past_the_password(client, user, "phone-login")
    client.post("/phone-login/phone/", {"action": "sms"})
    page = page_of(client.get("/phone-login/phone/"))
    button = page.default_button(page.owner_of("code"))
    assert button is not None and button.get("value") == "verify-sms", button


# === held: cross-site GET, HEAD and prefetch of /<flow>/cancel/ ===========================


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_SEC_PURPOSE": "prefetch"},
        {"HTTP_PURPOSE": "prefetch"},
        {"HTTP_X_MOZ": "prefetch"},
        {"HTTP_SEC_PURPOSE": "prefetch;prerender"},
        {"HTTP_SEC_FETCH_DEST": "image", "HTTP_SEC_FETCH_MODE": "no-cors"},
        {"HTTP_SEC_FETCH_SITE": "same-origin", "HTTP_SEC_FETCH_USER": "?1"},
    ],
)
def test_no_kind_of_get_of_cancel_touches_the_attempt(client, email_user, headers):
    past_the_password(client, email_user)
    before = attempt(client, "email-login")
    revision = row_revision(before)
    response = client.get("/email-login/cancel/", **headers)
    assert response.status_code == 302 and response.url == "/"
    assert attempt(client, "email-login") == before
    assert row_revision(before) == revision
    assert client.get(CODE_PAGE).status_code == 200


def test_head_of_cancel_is_refused_and_keeps_the_attempt(client, email_user):
    past_the_password(client, email_user)
    before = attempt(client, "email-login")
    assert client.head("/email-login/cancel/", HTTP_SEC_PURPOSE="prefetch").status_code == 405
    assert attempt(client, "email-login") == before


def test_cancel_without_its_slash_is_a_get_too(client, email_user):
    past_the_password(client, email_user)
    before = attempt(client, "email-login")
    response = client.get("/email-login/cancel", follow=True)
    assert response.status_code == 200
    assert attempt(client, "email-login") == before


def test_a_get_of_cancel_reveals_nothing_about_an_attempt(email_user):
    """The answer to a GET is the same with and without an attempt in progress: no
    session write, no cookie, no message, the same Location."""
    busy, idle = Client(), Client()
    past_the_password(busy, email_user)
    idle.get("/")
    answers = []
    for c in (busy, idle):
        response = c.get("/email-login/cancel/")
        answers.append((response.status_code, response.url, sorted(response.cookies)))
        shown = c.get(response.url).content.decode()
        assert 'class="notice notice-' not in shown
    assert answers[0] == answers[1] == (302, "/", [])


def test_a_get_of_cancel_is_no_open_redirect(client):
    for query in ("?next=https://evil.example/", "?url=//evil.example", "?start_url=x"):
        response = client.get(f"/email-login/cancel/{query}")
        assert response.status_code == 302 and response.url == "/"
        response = client.post(f"/email-login/cancel/{query}")
        assert response.status_code == 302 and response.url == "/"


@pytest.mark.parametrize(
    "path",
    ["/EMAIL-LOGIN/cancel/", "/no-such-flow/cancel/", "/email-login%2F..%2Fphone-login/cancel/"],
)
def test_an_unknown_flow_name_cancels_nothing(client, email_user, path):
    past_the_password(client, email_user)
    before = attempt(client, "email-login")
    assert client.post(path).status_code == 404
    assert client.get(path).status_code == 404
    assert attempt(client, "email-login") == before


# === held: forged POSTs ===================================================================


def test_a_post_with_another_sessions_token_is_refused(email_user):
    victim = Client(enforce_csrf_checks=True)
    victim.get("/")
    victim.post("/login/start/", {"method": "email", "csrfmiddlewaretoken": token_of(victim)})
    before = attempt(victim, "email-login")
    assert before
    attacker = Client(enforce_csrf_checks=True)
    page = attacker.get("/email-login/cancel/", follow=True).content.decode()
    stolen = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    for token in (stolen, token_of(attacker)):
        response = victim.post("/email-login/cancel/", {"csrfmiddlewaretoken": token})
        assert response.status_code == 403
        assert attempt(victim, "email-login") == before
    response = victim.post(
        "/email-login/cancel/", HTTP_X_CSRFTOKEN=token_of(attacker), content_type="text/plain"
    )
    assert response.status_code == 403
    assert attempt(victim, "email-login") == before


def test_a_post_with_the_right_token_from_another_origin_is_refused(email_user):
    client = Client(enforce_csrf_checks=True)
    client.get("/")
    client.post("/login/start/", {"method": "email", "csrfmiddlewaretoken": token_of(client)})
    before = attempt(client, "email-login")
    response = client.post(
        "/email-login/cancel/",
        {"csrfmiddlewaretoken": token_of(client)},
        HTTP_ORIGIN="https://evil.example",
    )
    assert response.status_code == 403
    assert attempt(client, "email-login") == before
    response = client.post(
        "/email-login/cancel/",
        {"csrfmiddlewaretoken": token_of(client)},
        HTTP_REFERER="https://evil.example/page",
        secure=True,
    )
    assert response.status_code == 403
    assert attempt(client, "email-login") == before
    # The same token from this site does cancel.
    response = client.post(
        "/email-login/cancel/",
        {"csrfmiddlewaretoken": token_of(client)},
        HTTP_ORIGIN="http://testserver",
    )
    assert response.status_code == 302 and attempt(client, "email-login") is None


def test_a_token_from_before_the_sign_in_cannot_cancel_a_my_account_change(make_user):
    """The sign-in rotates the CSRF secret: a page kept from before it (or another
    site that learnt that old token) cannot cancel what the signed-in session does."""
    user = make_user(mfa="email")
    client = Client(enforce_csrf_checks=True)
    client.get("/")
    old = token_of(client)

    def post(url: str, data: dict | None = None):
        return client.post(url, {**(data or {}), "csrfmiddlewaretoken": token_of(client)})

    post("/login/start/", {"method": "email"})
    post("/email-login/credentials/", {"email": user.email, "password": PASSWORD})
    post(CODE_PAGE, {"action": "send"})
    post(CODE_PAGE, {"action": "verify", "code": email_code(user.email)})
    assert post(CODE_PAGE, {"action": "continue"}).url == "/home/"
    assert token_of(client) != old
    post(CHANGE_EMAIL)
    before = attempt(client, "change-email")
    assert before
    response = client.post("/change-email/cancel/", {"csrfmiddlewaretoken": old})
    assert response.status_code == 403
    assert attempt(client, "change-email") == before


# === held: another flow's or another user's attempt =======================================


@pytest.mark.parametrize(
    "other", ["phone-login", "register", "forgot-password", "change-phone", "add-passkey"]
)
def test_cancelling_another_flow_by_its_name_leaves_this_one(client, email_user, other):
    past_the_password(client, email_user)
    before = attempt(client, "email-login")
    assert client.post(f"/{other}/cancel/").status_code == 302
    assert attempt(client, "email-login") == before
    assert client.get(CODE_PAGE).status_code == 200


def test_another_user_cannot_cancel_my_change(make_user):
    me = signed_in_as(make_user(mfa="phone"))
    me.post(CHANGE_PHONE)
    mine = attempt(me, "change-phone")
    other = signed_in_as(make_user(mfa="phone"))
    other.post(CHANGE_PHONE)
    assert other.post("/change-phone/cancel/").status_code == 302
    assert attempt(other, "change-phone") is None
    assert attempt(me, "change-phone") == mine and row_revision(mine) is not None
    assert me.get("/change-phone/current/").status_code == 200


def test_a_cancel_post_deletes_only_the_row_of_its_own_flow_and_session(email_user):
    """discard() deletes by this session's pointer and the flow's name: a row of another
    session (even at the same flow) stays."""
    a, b = Client(), Client()
    past_the_password(a, email_user)
    past_the_password(b, email_user)
    pointer_a, pointer_b = attempt(a, "email-login"), attempt(b, "email-login")
    b.post("/email-login/cancel/")
    assert row_revision(pointer_b) is None
    assert row_revision(pointer_a) is not None


# === held: Cancel racing the last step ====================================================


def test_cancel_landing_in_the_middle_of_the_last_continue_wins(client, email_user, monkeypatch):
    """Cancel (another tab, a double click) runs after Continue read the attempt and
    before it finishes: the finish's compare-and-set finds no row, nobody is signed in."""
    past_the_password(client, email_user)
    client.post(CODE_PAGE, {"action": "send"})
    client.post(CODE_PAGE, {"action": "verify", "code": email_code(email_user.email)})
    other_tab = Client()
    other_tab.cookies = client.cookies
    original = EmailCode.handle
    raced = []

    def handle(self, request, state):
        if request.method == "POST" and request.POST.get("action") == "continue" and not raced:
            raced.append(other_tab.post("/email-login/cancel/").status_code)
        return original(self, request, state)

    monkeypatch.setattr(EmailCode, "handle", handle)
    response = client.post(CODE_PAGE, {"action": "continue"})
    assert raced == [302]
    assert response.status_code == 302 and response.url == "/"
    assert not signed_in(client)
    assert client.get("/home/").status_code == 302
    assert attempt(client, "email-login") is None


def test_cancel_landing_in_the_middle_of_next_leaves_no_later_stage(client, org, monkeypatch):
    client.get("/register/")
    other_tab = Client()
    other_tab.cookies = client.cookies
    original = OrganizationStage.handle

    def handle(self, request, state):
        if request.method == "POST":
            other_tab.post("/register/cancel/")
        return original(self, request, state)

    monkeypatch.setattr(OrganizationStage, "handle", handle)
    response = client.post(
        "/register/organization/", {"npi": org.npi, "registration_code": "REG-CODE-1"}
    )
    assert response.status_code == 302 and response.url == "/"
    assert attempt(client, "register") is None
    assert client.get("/register/user-info/").url == "/"


def test_a_cancel_that_read_the_session_before_the_sign_in_does_not_undo_it(client, email_user):
    """Continue finishes first and rotates the session key; a Cancel still carrying the
    old key (sent at the same moment) neither signs the user out nor brings the old
    session back."""
    past_the_password(client, email_user)
    client.post(CODE_PAGE, {"action": "send"})
    client.post(CODE_PAGE, {"action": "verify", "code": email_code(email_user.email)})
    old_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    late = Client()
    late.cookies[settings.SESSION_COOKIE_NAME] = old_key
    assert client.post(CODE_PAGE, {"action": "continue"}).url == "/home/"
    response = late.post("/email-login/cancel/")
    assert response.status_code == 302 and response.url == "/"
    assert signed_in(client)
    assert client.get("/home/").status_code == 200
    old = Session.objects.filter(session_key=old_key).first()
    assert old is None or SESSION_KEY not in old.get_decoded()


# === held: every page's Cancel form ======================================================


def test_sign_in_pages_each_have_one_good_cancel_form(client, email_user, make_user):
    client.post("/login/start/", {"method": "email"})
    assert_one_good_cancel_form(client.get("/email-login/credentials/"), "email-login")
    past_the_password(client, email_user)
    assert_one_good_cancel_form(client.get(CODE_PAGE), "email-login")
    client.post(CODE_PAGE, {"action": "send"})
    assert_one_good_cancel_form(client.get(CODE_PAGE), "email-login")
    phone = Client()
    past_the_password(phone, make_user(mfa="phone", phone="+12025559885"), "phone-login")
    assert_one_good_cancel_form(phone.get("/phone-login/phone/"), "phone-login")
    phone.post("/phone-login/phone/", {"action": "sms"})
    assert_one_good_cancel_form(phone.get("/phone-login/phone/"), "phone-login")


def test_the_wrong_method_page_goes_back_only_by_the_cancel_form(client, email_user):
    client.post("/login/start/", {"method": "phone"})
    response = client.post(
        "/phone-login/credentials/", {"email": email_user.email, "password": PASSWORD}
    )
    shown = client.get(response.url) if response.status_code == 302 else response
    assert b"Please use LOGIN WITH EMAIL" in shown.content
    page = assert_one_good_cancel_form(shown, "phone-login")
    back = [c for c in page.controls if c["tag"] == "button" and c.get("form")]
    assert back and all(c["owner"] == "flow-cancel" and c["type"] == "submit" for c in back)
    client.post("/phone-login/cancel/")
    assert attempt(client, "phone-login") is None


def test_registration_pages_each_have_one_good_cancel_form(client, org, make_user):
    client.get("/register/")
    page = assert_one_good_cancel_form(client.get("/register/organization/"), "register")
    assert page.default_button(page.owner_of("npi")).get("form") is None
    client.post("/register/organization/", {"npi": org.npi, "registration_code": "REG-CODE-1"})
    page = assert_one_good_cancel_form(client.get("/register/user-info/"), "register")
    button = page.default_button(page.owner_of("username"))
    assert button is not None and "flow-cancel" not in button.get("form", "")
    # "< LOGIN" cancels, and the stage's fields (posted or not) change nothing about that.
    response = client.post("/register/cancel/", {"username": "x", "action": "next"})
    assert response.status_code == 302 and attempt(client, "register") is None

    other = Client()
    user = mfa_registration_to_email_code(other, make_user)
    assert_one_good_cancel_form(other.get("/mfa-registration/email-code/"), "mfa-registration")
    other.post("/mfa-registration/email-code/", {"action": "send", "email": user.email})
    assert_one_good_cancel_form(other.get("/mfa-registration/email-code/"), "mfa-registration")


def test_forgot_password_pages_have_one_good_cancel_form(client, email_user):
    response = client.get("/forgot-password/")
    assert response.status_code == 302
    assert_one_good_cancel_form(client.get(response.url), "forgot-password")


@pytest.mark.parametrize(
    "start, flow, stage",
    [
        (CHANGE_PHONE, "change-phone", "/change-phone/current/"),
        (CHANGE_EMAIL, "change-email", "/change-email/current/"),
        ("/account/passkeys/add/verify/", "add-passkey", None),
        ("/account/authenticator/set-up/", "add-authenticator", None),
        ("/account/recovery-codes/new/", "new-recovery-codes", None),
    ],
)
def test_my_account_flows_cancel_only_by_post(make_user, start, flow, stage):
    client = signed_in_as(make_user(mfa="phone", phone="+12025559885"))
    response = client.post(start)
    assert response.status_code == 302, response
    stage = stage or response.url
    assert stage.startswith(f"/{flow}/")
    assert_one_good_cancel_form(client.get(stage), flow)
    before = attempt(client, flow)
    assert before
    response = client.get(f"/{flow}/cancel/", HTTP_SEC_FETCH_SITE="cross-site")
    assert response.status_code == 302 and response.url == "/setup/my-account/"
    assert attempt(client, flow) == before and row_revision(before) is not None
    assert client.get(stage).status_code == 200
    response = client.post(f"/{flow}/cancel/")
    assert response.status_code == 302 and response.url == "/setup/my-account/"
    assert attempt(client, flow) is None and row_revision(before) is None
    assert signed_in(client), "Cancel of a My Account change signs nobody out"


# === held: the templates and scripts themselves ===========================================


def _templates() -> dict[str, str]:
    return {
        str(path.relative_to(TEMPLATES)): path.read_text() for path in TEMPLATES.rglob("*.html")
    }


def test_no_template_or_script_links_to_cancel():
    sources = {**_templates()}
    sources.update({str(p.relative_to(STATIC)): p.read_text() for p in STATIC.rglob("*.js")})
    for name, text in sources.items():
        assert not re.search(r"href\s*=\s*[\"'][^\"']*cancel", text, re.I), name
        assert not re.search(r"href\s*=\s*[\"']\{%\s*url\s+'flows:cancel'", text), name
        assert not re.search(r"formaction\s*=\s*[\"'][^\"']*cancel", text, re.I), name
        if name.endswith(".js"):
            assert "/cancel" not in text, name
    users = [n for n, t in sources.items() if "flows:cancel" in t or "/cancel/" in t]
    assert users == ["flow_base.html"]


def test_every_form_flow_cancel_button_is_on_a_flow_base_page():
    """A button naming form="flow-cancel" on a page without that form would submit
    nothing (or, without its form attribute honoured, the stage form)."""
    templates = _templates()

    def extends_flow_base(name: str) -> bool:
        text = templates[name]
        match = re.search(r'{%\s*extends\s+"([^"]+)"', text)
        if match is None:
            return "wrapped_template" in text  # wraps a flow stage's own template
        return match.group(1) == "flow_base.html" or (
            match.group(1) in templates and extends_flow_base(match.group(1))
        )

    for name, text in templates.items():
        if 'form="flow-cancel"' in text and name != "flow_base.html":
            assert extends_flow_base(name), name
            for tag in re.findall(r"<button[^>]*form=\"flow-cancel\"[^>]*>", text):
                assert 'type="submit"' in tag, (name, tag)
        if name != "flow_base.html":
            assert 'id="flow-cancel"' not in text, f"{name} adds a second Cancel form"
        if extends_flow_base(name) and name != "flow_base.html":
            assert "{% block content" not in text, f"{name} drops the Cancel form"
