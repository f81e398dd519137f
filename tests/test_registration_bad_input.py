"""Hostile input into every field of every registration form: never a 500, always a message
on the page (or a clean acceptance), and nothing stored for a rejected registration.

Values: empty, huge (100k), non-ASCII, control characters, NUL bytes and malformed values
(look-alike digits, extensions, markup, template and SQL fragments).
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import pytest
from django.core.cache import cache
from django.test import Client
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from caregate.accounts.models import TermsAcceptance, TermsVersion, User
from caregate.delivery.models import OutboxMessage
from caregate.flows.stages.user_info import US_STATES
from tests.conftest import PASSWORD
from tests.registration_steps import (
    NEW_PASSWORD,
    choose,
    create_password,
    email_code,
    section1_login,
    specify_organization,
    user_info,
    verify_email,
)

pytestmark = pytest.mark.django_db

MALFORMED = [
    "\x00",
    "abc\x00def",
    "\x00" * 50,
    "12345\n",
    "\r\n",
    "\t \t",
    "\x1b[31mred",
    "\u202eevil",
    "\ufeffbom",
    "１２３４５",
    "٠١٢٣٤٥٦٧٨٩",
    "𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗𝟎",
    "😀" * 20,
    "ß İ ﬁ Ǆ",
    "<script>alert(1)</script>",
    "' OR '1'='1' --",
    "{{ settings.SECRET_KEY }}",
    "{% debug %}",
    "%00",
    "../../etc/passwd",
    "+1 (202) 555-0143 ext 9",
    "+44 20 7946 0958",
    "1" * 11,
    "-",
    "@",
    "a@",
    "@b.example",
    "a@b@c.example",
    "dana@clinic.example\n",
    "x" * 255 + "@clinic.example",
    "null",
    "0",
    "-1",
    "1e309",
    "NaN",
]
NASTY = st.one_of(
    st.just(""),
    st.just("A" * 100_000),
    st.just("9" * 100_000),
    st.sampled_from(MALFORMED),
    st.text(max_size=60),  # any Unicode (Hypothesis leaves out lone surrogates)
    st.text(alphabet=st.characters(max_codepoint=31), min_size=1, max_size=30),
    st.builds(lambda a, b: f"{a}\x00{b}", st.text(max_size=20), st.text(max_size=20)),
)
FUZZ = hsettings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def has_message(response) -> bool:
    body = response.content.decode()
    return 'class="error-message"' in body or 'class="error-summary"' in body


def text_of(response) -> str:
    return html.unescape(response.content.decode())


def maybe(valid: str) -> st.SearchStrategy[str]:
    """Either the valid value or a nasty one."""
    return st.one_of(st.just(valid), NASTY)


def clean_stored(value: str) -> bool:
    return "\x00" not in value and all(ch.isprintable() for ch in value)


# --- Section 2: Specify Your Organization ---------------------------------------------


@FUZZ
@given(npi=NASTY, code=NASTY)
def test_organization_form(client: Client, org, npi: str, code: str) -> None:
    cache.clear()
    response = specify_organization(client, npi, code)
    assert response.status_code == 200
    assert has_message(response)
    assert not User.objects.exists()


@FUZZ
@given(field=st.sampled_from(["npi", "registration_code"]), value=NASTY)
def test_organization_form_one_bad_half(client: Client, org, field: str, value: str) -> None:
    cache.clear()
    data = {"npi": org.npi, "registration_code": "REG-CODE-1", field: value}
    response = specify_organization(client, data["npi"], data["registration_code"])
    assert response.status_code == 200
    assert has_message(response)


# --- Section 2: Enter User Information ------------------------------------------------

VALID_INFO = user_info()


def assert_stored_clean(user: User) -> None:
    """What an accepted registration stores: no NUL or control characters, and the
    formatted fields in their one canonical form."""
    for field in ["username", "first_name", "last_name", "address1", "address2", "city"]:
        assert clean_stored(getattr(user, field)), (field, getattr(user, field))
    assert user.username.isascii() and user.username.strip() == user.username
    assert user.state in {"", *dict(US_STATES)}
    assert re.fullmatch(r"(\d{5}(-?\d{4})?)?", user.zip_code, re.ASCII)
    assert re.fullmatch(r"\+1\d{10}", user.fax, re.ASCII)
    assert re.fullmatch(r"(\+1\d{10})?", user.office_phone, re.ASCII)
    assert user.email == user.email.strip().lower() and clean_stored(user.email)


INFO = st.fixed_dictionaries({name: maybe(value) for name, value in VALID_INFO.items()})


@FUZZ
@given(data=INFO)
def test_user_information_form(client: Client, org, data: dict[str, str]) -> None:
    assume(data != VALID_INFO)
    cache.clear()
    User.objects.all().delete()
    OutboxMessage.objects.all().delete()
    specify_organization(client, org.npi, "REG-CODE-1")
    response = client.post("/register/user-info/", data)
    assert response.status_code == 200
    if "Registration complete" in text_of(response):
        user = User.objects.get()
        assert_stored_clean(user)
        assert OutboxMessage.objects.filter(to=user.email).count() == 1
    else:
        assert has_message(response), text_of(response)[:3000]
        assert not User.objects.exists()
        assert not OutboxMessage.objects.exists()


@FUZZ
@given(field=st.sampled_from(sorted(VALID_INFO)), value=NASTY)
def test_user_information_one_bad_field(client: Client, org, field: str, value: str) -> None:
    cache.clear()
    User.objects.all().delete()
    specify_organization(client, org.npi, "REG-CODE-1")
    response = client.post("/register/user-info/", {**VALID_INFO, field: value})
    assert response.status_code == 200
    if "Registration complete" in text_of(response):
        assert_stored_clean(User.objects.get())
    else:
        assert has_message(response)
        assert not User.objects.exists()


# --- MFA registration (Section 1) -----------------------------------------------------


@pytest.fixture
def legacy(make_user) -> User:
    return make_user(username="legacy.user", email="legacy@old.example", mfa="none")


@FUZZ
@given(username=maybe("legacy.user"), password=maybe(PASSWORD))
def test_section1_credentials(client: Client, legacy: User, username: str, password: str) -> None:
    assume((username, password) != ("legacy.user", PASSWORD))
    cache.clear()
    response = section1_login(client, username, password)
    assert response.status_code == 200
    assert has_message(response)


@FUZZ
@given(method=NASTY)
def test_choose_method(client: Client, legacy: User, method: str) -> None:
    cache.clear()
    section1_login(client, "legacy.user", PASSWORD)
    response = client.post("/mfa-registration/method/", {"method": method})
    assert response.status_code == 200
    assert "Please select PHONE or EMAIL." in text_of(response)


@FUZZ
@given(email=NASTY)
def test_email_code_editable_email(client: Client, legacy: User, settings, email: str) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    cache.clear()
    if not client.session.get("caregate.flows"):
        section1_login(client, "legacy.user", PASSWORD)
        choose(client, "mfa-registration", "email")
    client.post("/mfa-registration/email-code/", {"action": "change"})
    before = OutboxMessage.objects.count()
    response = client.post("/mfa-registration/email-code/", {"action": "send", "email": email})
    assert response.status_code == 200
    if "Verification code has been sent" in text_of(response):
        sent = OutboxMessage.objects.order_by("-id").first()
        assert OutboxMessage.objects.count() == before + 1
        assert clean_stored(sent.to) and sent.to == sent.to.lower()
    else:
        assert has_message(response)
        assert OutboxMessage.objects.count() == before


@FUZZ
@given(code=NASTY, action=st.sampled_from(["verify", "continue"]))
def test_email_code_verification(client: Client, legacy: User, code: str, action: str) -> None:
    cache.clear()
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, "mfa-registration", "email")
    client.post("/mfa-registration/email-code/", {"action": "send", "email": "w@clinic.example"})
    assume(code != email_code("w@clinic.example"))
    response = client.post("/mfa-registration/email-code/", {"action": action, "code": code})
    assert response.status_code == 200
    assert has_message(response)


@FUZZ
@given(action=NASTY, email=NASTY, code=NASTY)
def test_email_code_unknown_actions(
    client: Client, legacy: User, action: str, email: str, code: str
) -> None:
    assume(action not in {"send", "resend", "verify", "change", "continue"})
    cache.clear()
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, "mfa-registration", "email")
    response = client.post(
        "/mfa-registration/email-code/", {"action": action, "email": email, "code": code}
    )
    assert response.status_code == 200
    assert not OutboxMessage.objects.exists()


PASSWORD_PAIRS = st.one_of(
    NASTY.map(lambda value: (value, value)),
    st.tuples(NASTY, NASTY),
    st.tuples(st.just(NEW_PASSWORD), NASTY),
)


@FUZZ
@given(pair=PASSWORD_PAIRS)
def test_set_password(client: Client, legacy: User, pair: tuple[str, str]) -> None:
    cache.clear()
    User.objects.filter(pk=legacy.pk).update(password=legacy.password, email_verified_at=None)
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, "mfa-registration", "phone")
    verify_email(client, "mfa-registration", "legacy@old.example")
    new, confirm = pair
    response = client.post(
        "/mfa-registration/password/",
        {"action": "create", "new_password": new, "confirm_password": confirm},
    )
    fresh = User.objects.get(pk=legacy.pk)
    if response.status_code == 302:
        assert response.url == "/mfa-registration/phone/"
        assert new == confirm and fresh.check_password(new)
    else:
        assert response.status_code == 200
        assert has_message(response)
        assert fresh.password == legacy.password
        assert fresh.email_verified_at is None


@FUZZ
@given(country=maybe("1"), number=maybe("202-555-0143"))
def test_phone_enroll(client: Client, legacy: User, settings, country: str, number: str) -> None:
    assume((country, number) != ("1", "202-555-0143"))
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    cache.clear()
    if "/phone/" not in client.get("/mfa-registration/phone/").get("Location", "/phone/"):
        section1_login(client, "legacy.user", PASSWORD)
        choose(client, "mfa-registration", "phone")
        verify_email(client, "mfa-registration", "legacy@old.example")
        create_password(client, "mfa-registration")
    client.post("/mfa-registration/phone/", {"action": "change-number"})
    before = OutboxMessage.objects.exclude(channel="email").count()
    for action in ["sms", "call"]:
        response = client.post(
            "/mfa-registration/phone/",
            {"action": action, "country_code": country, "phone_number": number},
        )
        assert response.status_code == 200
        if has_message(response):
            assert OutboxMessage.objects.exclude(channel="email").count() == before
        else:
            sent = OutboxMessage.objects.exclude(channel="email").order_by("-id").first()
            assert re.fullmatch(r"\+1\d{10}", sent.to, re.ASCII)
            client.post("/mfa-registration/phone/", {"action": "change-number"})
            before = OutboxMessage.objects.exclude(channel="email").count()
    fresh = User.objects.get(pk=legacy.pk)
    assert fresh.mfa_method == User.MfaMethod.NONE


@FUZZ
@given(code=NASTY)
def test_phone_sms_code(client: Client, legacy: User, code: str) -> None:
    cache.clear()
    if "/phone/" not in client.get("/mfa-registration/phone/").get("Location", "/phone/"):
        section1_login(client, "legacy.user", PASSWORD)
        choose(client, "mfa-registration", "phone")
        verify_email(client, "mfa-registration", "legacy@old.example")
        create_password(client, "mfa-registration")
        client.post(
            "/mfa-registration/phone/",
            {"action": "sms", "country_code": "1", "phone_number": "2025550143"},
        )
    response = client.post("/mfa-registration/phone/", {"action": "verify-sms", "code": code})
    assert response.status_code == 200
    assert has_message(response)
    assert User.objects.get(pk=legacy.pk).mfa_method == User.MfaMethod.NONE


# --- the registration helpers and the emailed link ------------------------------------


@FUZZ
@given(username=NASTY)
def test_registration_reset(client: Client, legacy: User, username: str) -> None:
    cache.clear()
    response = client.post("/registration-error/reset/", {"username": username})
    assert response.status_code == 200
    assert has_message(response) or "If that username has a registration" in text_of(response)


@FUZZ
@given(email=maybe("legacy@old.example"), password=maybe(PASSWORD))
def test_trouble_logging_in(client: Client, legacy: User, email: str, password: str) -> None:
    cache.clear()
    response = client.post("/trouble-logging-in/", {"email": email, "password": password})
    assert response.status_code == 200
    assert has_message(response) or "If this email address and password" in text_of(response)


@FUZZ
@given(token=NASTY)
def test_registration_link_token(client: Client, db, token: str) -> None:
    assume(token)
    landing = client.get(f"/registration-link/{quote(token, safe='')}/")
    assert landing.status_code in {302, 404}
    if landing.status_code == 302:
        assert landing.url == "/registration-link/"
        response = client.post("/registration-link/")
        assert response.status_code == 200
        assert "Registration Error" in text_of(response)


@FUZZ
@given(agree=NASTY)
def test_terms_agree(client: Client, signed_in: Client, email_user: User, agree: str) -> None:
    assume(agree != "yes")
    if not TermsVersion.objects.exists():
        TermsVersion.objects.create(version="v1", text="Terms.", published_at="2020-01-01T00:00Z")
    response = signed_in.post("/terms/", {"agree": agree})
    assert response.status_code == 200
    assert has_message(response)
    assert not TermsAcceptance.objects.exists()
