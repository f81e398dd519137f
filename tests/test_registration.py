"""Section 2 – New Provider Registration (first part) and the emailed 20-minute link.

"Specify Your Organization" (NPI + registration code, or the payer's ID in both fields),
"Enter User Information" (every field validated beside itself), "Registration is
complete", and the link that must be clicked within 20 minutes, once.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from caregate.accounts.models import User
from caregate.accounts.npi import npi_check_digit
from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.flows.stages.organization import NO_MATCH, TOO_MANY
from caregate.flows.stages.user_info import EMAIL_TAKEN, USERNAME_TAKEN
from caregate.verification.models import EmailLink
from tests.registration_steps import (
    open_link,
    register,
    registration_link,
    specify_organization,
    user_info,
)

pytestmark = pytest.mark.django_db


def page_text(response) -> str:
    return html.unescape(response.content.decode())


def field_error(response, field: str) -> str:
    """The message shown beside one field (field.html), or ""."""
    match = re.search(
        rf'id="id_{field}_error"[^>]*>(.*?)</p>', response.content.decode(), re.DOTALL
    )
    return html.unescape(match.group(1)).strip() if match else ""


def summary_error(response) -> str:
    match = re.search(
        r'<div class="error-summary" role="alert">(.*?)</div>',
        response.content.decode(),
        re.DOTALL,
    )
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip() if match else ""


def valid_npi(serial: int) -> str:
    base = f"2{serial:08d}"
    return base + npi_check_digit(base)


# --- Specify Your Organization --------------------------------------------------------


def test_npi_and_registration_code_lead_to_user_information(client: Client, make_org) -> None:
    organization = make_org(code="SECRET-77")
    response = specify_organization(client, organization.npi, "SECRET-77")
    assert response.status_code == 302 and response.url == "/register/user-info/"
    page = client.get("/register/user-info/")
    assert "Create a New Account - Enter User Information" in page_text(page)


def test_payer_id_typed_in_both_fields_opens_an_organization_without_npi(
    client: Client, make_org
) -> None:
    make_org(without_npi=True, payer_id="BCBS12345", code="BCBS12345")
    response = specify_organization(client, "BCBS12345", "BCBS12345")
    assert response.status_code == 302 and response.url == "/register/user-info/"


def test_organization_page_uses_the_guide_labels(client: Client, db) -> None:
    client.get("/register/")
    text = page_text(client.get("/register/organization/"))
    assert "Create a New Account - Specify Your Organization" in text
    assert "NPI *" in text
    assert "PROVIDER REGISTRATION CODE *" in text
    assert "NEXT" in text and "LOGIN" in text


def test_wrong_pair_gives_one_message_that_does_not_say_which_half(
    client: Client, make_org
) -> None:
    organization = make_org(code="RIGHT-CODE")
    make_org(without_npi=True, payer_id="BCBS555", code="BCBS555")
    wrong_code = specify_organization(client, organization.npi, "WRONG-CODE")
    unknown_npi = specify_organization(client, valid_npi(9001), "RIGHT-CODE")
    unknown_payer = specify_organization(client, "BCBS999", "BCBS999")
    payer_wrong_code = specify_organization(client, "BCBS555", "BCBS556")
    answers = [wrong_code, unknown_npi, unknown_payer, payer_wrong_code]
    assert {r.status_code for r in answers} == {200}
    assert {summary_error(r) for r in answers} == {NO_MATCH}
    for response in answers:
        assert field_error(response, "npi") == ""
        assert field_error(response, "registration_code") == ""
        text = page_text(response).lower()
        assert "not found" not in text and "unknown" not in text
    assert not User.objects.exists()


def test_registration_attempts_are_limited_per_npi(client: Client, make_org) -> None:
    organization = make_org(code="RIGHT-CODE")
    for attempt in range(10):
        response = specify_organization(client, organization.npi, f"WRONG-{attempt}")
        assert summary_error(response) == NO_MATCH
    # The 11th attempt is refused even with the right code.
    response = specify_organization(client, organization.npi, "RIGHT-CODE")
    assert response.status_code == 200
    assert summary_error(response) == TOO_MANY
    assert AuditEvent.objects.filter(
        event="registration.organization", outcome="throttled"
    ).exists()


def test_registration_attempts_are_limited_per_client(client: Client, make_org) -> None:
    organization = make_org(code="RIGHT-CODE")
    for serial in range(20):
        response = specify_organization(client, valid_npi(100 + serial), "GUESS")
        assert summary_error(response) == NO_MATCH
    response = specify_organization(client, organization.npi, "RIGHT-CODE")
    assert summary_error(response) == TOO_MANY
    # Another client address is not affected.
    other = Client(REMOTE_ADDR="198.51.100.20")
    response = specify_organization(other, organization.npi, "RIGHT-CODE")
    assert response.status_code == 302


@pytest.mark.parametrize(
    ("npi", "message"),
    [
        ("", "Please enter your NPI."),
        ("12345 67890", "10-digit NPI"),
        ("١٢٣٤٥٦٧٨٩٣", "10-digit NPI"),
    ],
)
def test_npi_format_is_checked_beside_the_field(
    client: Client, make_org, npi: str, message: str
) -> None:
    make_org(npi="1234567893")
    response = specify_organization(client, npi, "REG-CODE-1")
    assert response.status_code == 200
    assert message in field_error(response, "npi")


def test_registration_code_is_required(client: Client, org) -> None:
    response = specify_organization(client, org.npi, "")
    assert "Please enter your registration code." in field_error(response, "registration_code")


def test_user_information_cannot_be_reached_before_the_organization(client: Client, db) -> None:
    client.get("/register/")
    response = client.post("/register/user-info/", user_info())
    assert response.status_code == 302 and response.url == "/register/organization/"
    assert not User.objects.exists()


# --- Enter User Information -----------------------------------------------------------


def test_registration_creates_the_account_and_emails_a_20_minute_link(client: Client, org) -> None:
    response = register(client, org)
    assert response.status_code == 200
    text = page_text(response)
    assert "Registration complete" in text
    assert "you must click the link in your email within 20 minutes" in text
    user = User.objects.get(username="dana.provider")
    assert user.organization == org
    assert (user.first_name, user.last_name) == ("Dana", "O'Neil-Smith")
    assert (user.address1, user.address2, user.city) == ("100 Main Street", "Suite 2", "Jackson")
    assert (user.state, user.zip_code) == ("MS", "39201")
    assert user.email == "dana@clinic.example"
    assert user.office_phone == "+16015550143"
    assert user.fax == "+12025550144"
    assert user.mfa_method == User.MfaMethod.NONE
    assert not user.has_usable_password()
    assert user.email_verified_at is None
    message = OutboxMessage.objects.get(to="dana@clinic.example")
    assert "/registration-link/" in message.body
    assert "20 minutes" in message.body
    link = EmailLink.objects.get(user=user)
    assert link.expires_at - link.created_at == timedelta(minutes=20)
    assert AuditEvent.objects.filter(
        event="registration.account", outcome="success", user_id_snapshot=user.pk
    ).exists()


def test_registration_flow_cannot_be_replayed(client: Client, org) -> None:
    register(client, org)
    again = client.post("/register/user-info/", user_info(username="second", email="b@x.example"))
    assert again.status_code == 302
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("username", "Please enter your Username."),
        ("first_name", "Please enter your First Name."),
        ("last_name", "Please enter your Last Name."),
        ("email", "Please enter your Email."),
        ("confirm_email", "Please confirm your Email."),
        ("fax", "Please enter your Fax."),
    ],
)
def test_each_required_field_has_its_message(
    client: Client, org, field: str, message: str
) -> None:
    response = register(client, org, **{field: ""})
    assert response.status_code == 200
    assert field_error(response, field) == message
    assert not User.objects.exists()
    assert not OutboxMessage.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("username", "dana provider", "A username may contain only letters"),
        ("username", "dañа", "A username may contain only letters"),
        ("username", "u" * 151, "at most 150 characters"),
        ("first_name", "<script>", "Please use letters"),
        ("last_name", "Smith\u200b\x07", "Please use letters"),
        ("address1", "x" * 101, "at most 100 characters"),
        ("address1", "1 Main St\x1b[2J", "Please use letters, digits"),
        ("address2", "Suite\r\n2", "Please use letters, digits"),
        ("city", "Jack\tson", "Please use letters, digits"),
        ("city", "c" * 61, "at most 60 characters"),
        ("state", "ZZ", "Please select a state from the list."),
        ("state", "Mississippi", "Please select a state from the list."),
        ("zip_code", "3920", "Enter a 5-digit ZIP code"),
        ("zip_code", "392011", "Enter a 5-digit ZIP code"),
        ("zip_code", "39201-12", "Enter a 5-digit ZIP code"),
        ("zip_code", "ABCDE", "Enter a 5-digit ZIP code"),
        ("zip_code", "３９２０１", "Enter a 5-digit ZIP code"),
        ("email", "dana@", "Enter a valid email address."),
        ("phone", "555-0143", "10-digit phone number"),
        ("phone", "601-555-0143 ext 7", "extensions are not supported"),
        ("phone", "+44 20 7946 0958", "not supported"),
        ("fax", "12345", "10-digit phone number"),
        ("fax", "202 555 0144 x9", "extensions are not supported"),
        ("fax", "800-555-0144", "Toll-free numbers (such as 800, 888 or 877) cannot be used."),
    ],
)
def test_each_field_is_validated_beside_itself(
    client: Client, org, field: str, value: str, message: str
) -> None:
    overrides = {field: value}
    if field == "email":
        overrides["confirm_email"] = value
    response = register(client, org, **overrides)
    assert response.status_code == 200
    assert message in field_error(response, field), field_error(response, field)
    assert not User.objects.exists()
    assert not OutboxMessage.objects.exists()


def test_npi_check_digit_is_validated(client: Client, make_org) -> None:
    """A mistyped NPI is not refused beside the field (digits may be a payer ID), but when
    nothing matches the message says the check digit is wrong."""
    make_org(npi="1234567893")
    response = specify_organization(client, "1234567894", "REG-CODE-1")
    assert response.status_code == 200
    assert field_error(response, "npi") == ""
    assert summary_error(response).startswith(NO_MATCH)
    assert "1234567894 is not a valid NPI" in summary_error(response)
    assert "check digit" in summary_error(response)
    response = specify_organization(client, "1234567893", "REG-CODE-1")
    assert response.status_code == 302


@pytest.mark.parametrize("payer_id", ["4471", "123456789", "1234567890", "12345678901234"])
def test_a_payer_id_made_only_of_digits_registers_when_it_is_not_a_valid_npi(
    client: Client, make_org, payer_id: str
) -> None:
    """Providers without an NPI type the payer's ID in both fields; some payers issue IDs
    of digits only (any length, even ten digits that fail the NPI check digit)."""
    make_org(name="Digits Only Clinic", without_npi=True, payer_id=payer_id, code=payer_id)
    response = specify_organization(client, payer_id, payer_id)
    assert response.status_code == 302 and response.url == "/register/user-info/"
    assert "Digits Only Clinic" in page_text(client.get("/register/user-info/"))


def test_a_digits_only_payer_id_with_the_wrong_code_gets_the_one_message(
    client: Client, make_org
) -> None:
    make_org(without_npi=True, payer_id="445566", code="445566")
    response = specify_organization(client, "445566", "445567")
    assert response.status_code == 200
    assert summary_error(response) == NO_MATCH
    assert field_error(response, "npi") == ""


def test_a_digits_only_payer_id_is_not_written_to_the_audit_log(client: Client, make_org) -> None:
    """Without an NPI the payer ID is the registration code: it must not be logged."""
    make_org(without_npi=True, payer_id="778899", code="778899")
    specify_organization(client, "778899", "778899")
    specify_organization(client, "778800", "778800")
    events = AuditEvent.objects.filter(event="registration.organization")
    assert {e.outcome for e in events} == {"success", "failure"}
    for event in events:
        logged = f"{event.detail} {event.username}"
        assert "778899" not in logged and "778800" not in logged


def test_user_information_shows_organizational_information_with_the_name(
    client: Client, make_org
) -> None:
    """The guide's "Enter User Information" screen opens with "Organizational
    Information": the organization the NPI and code opened."""
    organization = make_org(name="Riverside Family Practice", code="SECRET-77")
    specify_organization(client, organization.npi, "SECRET-77")
    text = page_text(client.get("/register/user-info/"))
    assert "Organizational Information" in text
    assert "Riverside Family Practice" in text
    assert text.index("Organizational Information") < text.index("Account Information")


def test_organization_name_is_not_shown_before_the_npi_and_code_match(
    client: Client, make_org
) -> None:
    organization = make_org(name="Riverside Family Practice", code="SECRET-77")
    response = specify_organization(client, organization.npi, "WRONG")
    assert "Riverside Family Practice" not in page_text(response)
    # The next screen cannot be reached by URL either.
    response = client.get("/register/user-info/", follow=True)
    assert "Riverside Family Practice" not in page_text(response)


def test_email_and_confirmation_must_match(client: Client, org) -> None:
    response = register(client, org, confirm_email="dana@clinic.example.org")
    assert field_error(response, "confirm_email") == "The two email addresses do not match."
    assert not User.objects.exists()


def test_email_confirmation_is_compared_case_insensitively(client: Client, org) -> None:
    response = register(client, org, confirm_email="Dana@Clinic.Example")
    assert response.status_code == 200 and "Registration complete" in page_text(response)
    assert User.objects.get().email == "dana@clinic.example"


@pytest.mark.parametrize("zip_code", ["39201", "39201-1234", "392011234", ""])
def test_zip_code_of_5_or_9_digits_is_accepted(client: Client, org, zip_code: str) -> None:
    response = register(client, org, zip_code=zip_code)
    assert "Registration complete" in page_text(response)
    assert User.objects.get().zip_code == zip_code


def test_phone_is_optional_but_fax_is_not(client: Client, org) -> None:
    response = register(client, org, phone="")
    assert "Registration complete" in page_text(response)
    assert User.objects.get().office_phone == ""


def test_username_taken_in_any_case_is_refused(client: Client, org, make_org, make_user) -> None:
    make_user(username="Dana.Provider", organization=make_org(name="Elsewhere Health"))
    count = User.objects.count()
    response = register(client, org, username="dana.PROVIDER")
    assert field_error(response, "username") == USERNAME_TAKEN
    assert User.objects.count() == count
    assert not OutboxMessage.objects.exists()


def test_email_taken_is_refused_at_save_with_the_page_of_a_new_account(
    client: Client, org, make_org, make_user
) -> None:
    other = make_org(name="Riverside Cardiology Partners")
    holder = make_user(email="dana@clinic.example", organization=other, username="rrobin")
    User.objects.filter(pk=holder.pk).update(first_name="Robin")
    count = User.objects.count()
    response = register(
        client, org, email="DANA@clinic.example", confirm_email="dana@clinic.example"
    )
    # The registrant is not told (anyone with a registration code could test addresses):
    # the page is the one a new account gets; only the mailbox's owner hears of it.
    assert field_error(response, "email") == ""
    text = page_text(response)
    assert "Registration complete" in text
    assert "Riverside" not in text and "Cardiology" not in text
    assert "Robin" not in text and "rrobin" not in text
    assert User.objects.count() == count
    assert not User.objects.filter(username="dana.provider").exists()
    notice = OutboxMessage.objects.get(to="dana@clinic.example")
    assert EMAIL_TAKEN in notice.body
    assert "/registration-link/" not in notice.body
    assert not EmailLink.objects.exists()
    assert AuditEvent.objects.filter(event="registration.account", outcome="email-in-use").exists()


def test_several_errors_are_all_shown_at_once(client: Client, org) -> None:
    response = register(
        client, org, username="", zip_code="1", state="XX", fax="", confirm_email="z@z.example"
    )
    for field in ["username", "zip_code", "state", "fax", "confirm_email"]:
        assert field_error(response, field), field
    assert not User.objects.exists()


def test_user_information_page_shows_the_fax_notice_and_labels(client: Client, org) -> None:
    specify_organization(client, org.npi, "REG-CODE-1")
    text = page_text(client.get("/register/user-info/"))
    for label in [
        "USERNAME *",
        "FIRST NAME *",
        "LAST NAME *",
        "ADDRESS 1",
        "ADDRESS 2",
        "CITY",
        "STATE",
        "Select State",
        "ZIP CODE",
        "EMAIL *",
        "CONFIRM EMAIL *",
        "PHONE",
        "FAX *",
        "Providers in receipt of Faxed Determination Letters",
    ]:
        assert label in text, label


# --- the emailed link -----------------------------------------------------------------


def test_link_leaves_the_url_and_is_spent_only_by_continue(client: Client, org) -> None:
    register(client, org)
    path = registration_link("dana@clinic.example")
    token = path.rstrip("/").rsplit("/", 1)[1]
    landing = client.get(path)
    assert landing.status_code == 302
    assert landing.url == "/registration-link/"
    assert token not in landing.url
    page = client.get("/registration-link/")
    assert page.status_code == 200
    assert token not in page.content.decode()
    assert "Continue" in page_text(page)
    link = EmailLink.objects.get()
    assert link.used_at is None, "a GET (a mail scanner) must not spend the link"
    # Reloading the page does not spend it either.
    client.get("/registration-link/")
    link.refresh_from_db()
    assert link.used_at is None
    # A POST that does not carry the page's binding to its link spends nothing.
    unbound = client.post("/registration-link/")
    assert unbound.status_code == 200
    link.refresh_from_db()
    assert link.used_at is None
    binding = re.search(r'name="link" value="([^"]+)"', page.content.decode()).group(1)
    response = client.post("/registration-link/", {"link": binding})
    assert response.status_code == 302
    assert response.url == "/complete-registration/method/"
    link.refresh_from_db()
    assert link.used_at is not None


def test_link_is_single_use(client: Client, org) -> None:
    register(client, org)
    path = registration_link("dana@clinic.example")
    assert open_link(client, path).url == "/complete-registration/method/"
    again = Client()
    response = open_link(again, path)
    assert response.status_code == 200
    text = page_text(response)
    assert "Registration Error" in text
    assert "This link has already been used." in text
    assert "Reset" in text
    # The second use did not start a flow.
    assert again.get("/complete-registration/method/").status_code == 302


def test_link_works_until_its_20_minutes_are_over(client: Client, org) -> None:
    register(client, org)
    path = registration_link("dana@clinic.example")
    link = EmailLink.objects.get()
    link.created_at -= timedelta(minutes=19)
    link.expires_at = timezone.now() + timedelta(minutes=1)
    link.save()
    assert open_link(client, path).url == "/complete-registration/method/"


def test_expired_link_shows_registration_error_and_what_to_do(client: Client, org) -> None:
    register(client, org)
    path = registration_link("dana@clinic.example")
    EmailLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = open_link(client, path)
    text = page_text(response)
    assert "Registration Error" in text
    assert "This link has expired: registration links last 20 minutes." in text
    assert "Select Reset, enter your username and select Submit" in re.sub(r"<[^>]+>", "", text)
    assert 'href="/registration-error/reset/"' in response.content.decode()
    assert client.get("/complete-registration/method/").status_code == 302
    assert AuditEvent.objects.filter(event="registration.link", outcome="expired").exists()


def test_link_lifetime_follows_the_setting(client: Client, org, settings) -> None:
    settings.CAREGATE_REGISTRATION_LINK_SECONDS = 120
    response = register(client, org)
    assert "within 2 minutes" in page_text(response)
    link = EmailLink.objects.get()
    assert link.expires_at - link.created_at == timedelta(minutes=2)


def test_unknown_link_shows_registration_error(client: Client, db) -> None:
    response = open_link(client, "/registration-link/not-a-real-token/")
    text = page_text(response)
    assert "Registration Error" in text and "This link is not valid." in text


def test_continue_without_a_link_shows_registration_error(client: Client, db) -> None:
    response = client.get("/registration-link/")
    assert "Registration Error" in page_text(response)
    response = client.post("/registration-link/")
    assert "Registration Error" in page_text(response)


def test_only_a_hash_of_the_token_is_stored(client: Client, org) -> None:
    register(client, org)
    path = registration_link("dana@clinic.example")
    token = path.rstrip("/").rsplit("/", 1)[1]
    link = EmailLink.objects.get()
    assert token not in link.token_hash
    assert len(link.token_hash) == 64


def test_link_of_a_disabled_account_does_not_work(client: Client, org) -> None:
    register(client, org)
    path = registration_link("dana@clinic.example")
    User.objects.update(is_active=False)
    response = open_link(client, path)
    assert "Registration Error" in page_text(response)
    assert client.get("/complete-registration/method/").status_code == 302
