"""Hostile input into every field of the sign-in forms and the case search.

Empty, huge (100k characters), non-ASCII, control characters, NUL bytes, repeated and
missing fields, and malformed values: never a 500, always a message on the page (or a
redirect, for the login start), and nobody gets signed in.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from caregate.audit.models import AuditEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

FUZZ = hsettings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

HUGE = st.sampled_from(
    ["x" * 100_000, "é" * 100_000, "1" * 100_000, "\x00" * 100_000, "𝔘" * 100_000]
)
CONTROL = st.text(alphabet=st.characters(categories=["Cc"]), min_size=1, max_size=20)
NON_ASCII = st.text(
    alphabet=st.characters(min_codepoint=0x80, exclude_categories=["Cs"]), min_size=1
)
WITH_NUL = st.text(max_size=20).map(lambda s: f"{s}\x00{s}")
MALFORMED = st.sampled_from(
    [
        "%",
        "%zz",
        "%00",
        "' OR '1'='1' --",
        "<script>alert(1)</script>",
        "{{ 7|add:7 }}",
        "${jndi:ldap://x}",
        "١٢٣٤٥٦",  # Arabic-Indic digits
        "１２３４５６",  # fullwidth digits
        "12345\u200b6",  # a zero-width space inside a code
        " 123456 ",
        "123456\n",
        "-12345",
        "1e5",
        "@",
        "a@b",
        "user@example.com\x00",
        "user@exam ple.com",
        "\u202euser@example.com",
        "true",
        "on",
        "null",
        "[]",
        "\r\n\r\n",
    ]
)
VALUE = st.one_of(
    st.just(""),
    st.text(max_size=300),
    CONTROL,
    NON_ASCII,
    HUGE,
    WITH_NUL,
    MALFORMED,
)
# A field may also be repeated (several values) or missing altogether (None).
FIELD = st.one_of(VALUE, st.lists(VALUE, min_size=2, max_size=3), st.none())


def form(**fields) -> dict:
    return {name: value for name, value in fields.items() if value is not None}


def is_signed_in(client: Client) -> bool:
    return SESSION_KEY in client.session


def has_message(page: str) -> bool:
    return bool(re.search(r'role="(alert|status)"', page))


# --- the login start form ---------------------------------------------------------------


@FUZZ
@given(
    method=st.one_of(FIELD, st.sampled_from(["email", "phone", "EMAIL", " email"])),
    remember_me=FIELD,
)
def test_login_start_form(client, method, remember_me):
    response = client.post("/login/start/", form(method=method, remember_me=remember_me))
    assert response.status_code == 302
    assert response.url in {"/", "/email-login/credentials/", "/phone-login/credentials/"}
    page = client.get(response.url)
    assert page.status_code == 200
    if response.url == "/":
        assert "Please choose LOGIN WITH PHONE or LOGIN WITH EMAIL." in page.content.decode()
    assert not is_signed_in(client)


# --- credentials ------------------------------------------------------------------------


@FUZZ
@given(email=FIELD, password=FIELD, real_email=st.booleans())
def test_credentials_form(client, email_user, email, password, real_email):
    if real_email:
        email = email_user.email
    client.post("/login/start/", {"method": "email"})
    response = client.post("/email-login/credentials/", form(email=email, password=password))
    assert response.status_code == 200
    page = response.content.decode()
    assert has_message(page), page[:2000]
    assert not is_signed_in(client)
    assert client.get("/email-login/email-code/").url == "/email-login/credentials/"


CONTENT_FIELDS = ("event", "outcome", "username", "client_ip", "user_agent", "flow", "detail")


@FUZZ
@given(password=FIELD)
def test_credentials_never_log_the_password(client, email_user, password):
    client.post("/login/start/", {"method": "email"})
    client.post("/email-login/credentials/", form(email=email_user.email, password=password))
    values = password if isinstance(password, list) else [password]
    # The chain's hex digests (the genesis link is 64 zeros) are not what was typed.
    stored = repr(list(AuditEvent.objects.values(*CONTENT_FIELDS)))
    for value in values:
        if value and len(value) >= 6 and value.isprintable():
            assert value not in stored


# --- the email code stage ---------------------------------------------------------------


@pytest.fixture
def at_code_stage(email_user) -> Client:
    client = Client()
    client.post("/login/start/", {"method": "email"})
    response = client.post(
        "/email-login/credentials/", {"email": email_user.email, "password": PASSWORD}
    )
    assert response.url == "/email-login/email-code/"
    return client


ACTION = st.one_of(FIELD, st.sampled_from(["send", "resend", "verify", "continue", "change"]))


@FUZZ
@given(action=ACTION, code=FIELD)
def test_email_code_form(at_code_stage, action, code):
    client = at_code_stage
    response = client.post("/email-login/email-code/", form(action=action, code=code))
    assert response.status_code == 200
    page = response.content.decode()
    assert has_message(page) or "Verification is necessary. Please click Send button." in page
    assert not is_signed_in(client)


# --- the case search --------------------------------------------------------------------


@FUZZ
@given(q=FIELD)
def test_case_search(signed_in, q):
    response = signed_in.get("/cases/", form(q=q))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'role="alert"' in page or "No records found." in page or "Results for" in page, page[
        :2000
    ]


# --- malformed request bodies and query strings -----------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"email=%ff%fe%fd&password=%c3%28",  # not UTF-8
        b"email=%zz&password=%",  # broken percent-encoding
        b"email&password",  # names without values
        b"=&=&&&",
        b"email=a%00b%40example.com&password=x%00y",
        b"\xff\xfe\x00\x00garbage",
    ],
)
def test_credentials_with_malformed_urlencoded_body(client, email_user, body):
    client.post("/login/start/", {"method": "email"})
    response = client.post(
        "/email-login/credentials/", body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert has_message(response.content.decode())
    assert not is_signed_in(client)


def test_credentials_with_broken_multipart_body(client, email_user):
    client.post("/login/start/", {"method": "email"})
    response = client.post(
        "/email-login/credentials/",
        b'--nope\r\nContent-Disposition: form-data; name="email"\r\n\r\nx',
        content_type="multipart/form-data; boundary=other",
    )
    assert response.status_code in {200, 400}
    assert not is_signed_in(client)


@pytest.mark.parametrize(
    "query", ["q=%ff%fe", "q=%zz", "q=%00", "q=a&q=b&q=c", "q", "q=" + "%41" * 50_000]
)
def test_case_search_with_malformed_query_string(signed_in, query):
    response = signed_in.get(f"/cases/?{query}")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'role="alert"' in page or "No records found." in page or "Results for" in page
