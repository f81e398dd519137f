"""Test-client steps of the registration flows (Section 1, Section 2, the emailed link).

Shared by the registration test modules; each step posts what a person would submit and
returns the last response, so a test can go on from any stage.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.test import Client

from caregate.accounts.models import Organization
from caregate.delivery.models import OutboxMessage

NEW_PASSWORD = "Brand-New-Passphrase-42"
LINK = re.compile(r"https?://[^\s/]+(/registration-link/[^\s/]+/)")
SIX_DIGITS = re.compile(r"\b(\d{6})\b")


def user_info(**overrides: str) -> dict[str, str]:
    """A complete, valid "Enter User Information" form; overrides replace fields."""
    data = {
        "username": "dana.provider",
        "first_name": "Dana",
        "last_name": "O'Neil-Smith",
        "address1": "100 Main Street",
        "address2": "Suite 2",
        "city": "Jackson",
        "state": "MS",
        "zip_code": "39201",
        "email": "dana@clinic.example",
        "confirm_email": "dana@clinic.example",
        "phone": "601-555-0143",
        "fax": "(202) 555-0144",
    }
    data.update(overrides)
    return data


# --- the outbox -------------------------------------------------------------------------


def newest_message(to: str) -> OutboxMessage:
    message = OutboxMessage.objects.filter(to__icontains=to).order_by("-id").first()
    assert message is not None, f"no message to {to} in the outbox"
    return message


def email_code(to: str) -> str:
    body = newest_message(to).body
    match = SIX_DIGITS.search(body)
    assert match, body
    return match.group(1)


def registration_link(to: str) -> str:
    """The path of the newest registration link emailed to ``to``."""
    body = newest_message(to).body
    match = LINK.search(body)
    assert match, body
    return match.group(1)


def sms_code(phone_e164: str) -> str:
    message = OutboxMessage.objects.filter(channel="sms", to=phone_e164).order_by("-id").first()
    assert message is not None, f"no SMS to {phone_e164}"
    match = SIX_DIGITS.search(message.body)
    assert match, message.body
    return match.group(1)


# --- Section 2, first part --------------------------------------------------------------


def specify_organization(client: Client, npi: str, code: str):
    """register here → "Specify Your Organization" → NEXT."""
    response = client.get("/register/")
    assert response.status_code == 302 and response.url == "/register/organization/"
    return client.post("/register/organization/", {"npi": npi, "registration_code": code})


def register(client: Client, organization: Organization, code: str = "REG-CODE-1", **info: str):
    """Section 2 up to "Registration is complete"; returns the last response."""
    identifier = organization.npi or ""  # a payer ID is kept only as a keyed hash
    response = specify_organization(client, identifier, code)
    assert response.status_code == 302 and response.url == "/register/user-info/", (
        response.content.decode()[:2000]
    )
    return client.post("/register/user-info/", user_info(**info))


def open_link(client: Client, path: str):
    """Follow the emailed link: landing (token leaves the URL), then Continue."""
    landing = client.get(path)
    assert landing.status_code == 302 and landing.url == "/registration-link/"
    page = client.get("/registration-link/")
    assert page.status_code == 200
    # Post what the page's form carries: its binding to the link it showed. A link that
    # cannot be used (expired, spent, unknown) gets no form: the page already says why.
    binding = re.search(r'name="link" value="([^"]+)"', page.content.decode())
    if binding is None:
        return page
    return client.post("/registration-link/", {"link": binding.group(1)})


# --- MFA registration (Section 1 and the link) ------------------------------------------


def section1_login(client: Client, username: str, password: str):
    """ "click here" → username and password → Login."""
    response = client.get("/mfa-registration/")
    assert response.status_code == 302 and response.url == "/mfa-registration/credentials/"
    return client.post(
        "/mfa-registration/credentials/", {"username": username, "password": password}
    )


def verify_email(client: Client, flow: str, email: str):
    """work email → Send verification code → Verify code."""
    url = f"/{flow}/email-code/"
    sent = client.post(url, {"action": "send", "email": email})
    assert sent.status_code == 200, sent.status_code
    assert "Verification code has been sent" in sent.content.decode(), sent.content.decode()
    return client.post(url, {"action": "verify", "code": email_code(email)})


def choose(client: Client, flow: str, method: str):
    return client.post(f"/{flow}/method/", {"method": method})


def create_password(client: Client, flow: str, password: str = NEW_PASSWORD):
    return client.post(
        f"/{flow}/password/",
        {"action": "create", "new_password": password, "confirm_password": password},
    )


def enroll(
    client: Client,
    flow: str,
    method: str,
    email: str,
    password: str = NEW_PASSWORD,
    phone: str = "202-555-0143",
):
    """From LOGIN METHOD to the end of MFA registration; returns the last response."""
    response = choose(client, flow, method)
    assert response.status_code == 302 and response.url == f"/{flow}/email-code/"
    response = verify_email(client, flow, email)
    assert response.status_code == 302 and response.url == f"/{flow}/password/", (
        response.content.decode()[:3000]
    )
    response = create_password(client, flow, password)
    if method == "email":
        return response
    assert response.status_code == 302 and response.url == f"/{flow}/phone/"
    sent = client.post(
        f"/{flow}/phone/", {"action": "sms", "country_code": "1", "phone_number": phone}
    )
    assert sent.status_code == 200
    e164 = "+1" + "".join(ch for ch in phone if ch.isdigit())[-10:]
    return client.post(f"/{flow}/phone/", {"action": "verify-sms", "code": sms_code(e164)})


def path_of(url: str) -> str:
    return urlsplit(url).path
