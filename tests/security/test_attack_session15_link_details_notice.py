"""Attack session 15: the registration link page that shows the registered details, and
the "New email address" notice that MFA registration sends to the account's old address.

``test_found_*``: a problem (fails against the code as it stands); ``test_held_*``: an
attack the code withstands.
"""

from __future__ import annotations

import email
import re
from datetime import timedelta
from email import policy
from unittest import mock

import pytest
from django.test import Client
from django.utils import timezone

from caregate.accounts.models import User
from caregate.delivery.models import OutboxMessage
from caregate.flows.registration_links import LINK_CHANGED, PURPOSE, send_registration_link
from caregate.flows.stages.set_password import EMAIL_NOW_TAKEN, SetPassword
from caregate.portal.manage_users import reset_registration
from caregate.portal.models import Message
from caregate.verification.links import issue_link
from caregate.verification.models import EmailLink, VerificationCode
from tests.conftest import PASSWORD
from tests.registration_steps import (
    choose,
    create_password,
    email_code,
    enroll,
    open_link,
    register,
    registration_link,
    section1_login,
    verify_email,
)
from tests.security.test_links import binding, page_text, plant
from tests.test_email_smtp import (  # noqa: F401 (fixtures)
    Collector,
    no_kept_connection,
    smtp_server,
)

pytestmark = pytest.mark.django_db
S1 = "mfa-registration"
LINKED = "complete-registration"
NOTICE = "New email address"
FAX_SHOWN = "(202) 555-0177"


def notices() -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(subject__contains=NOTICE).order_by("id"))


def notices_to(address: str) -> list[OutboxMessage]:
    return [message for message in notices() if message.to == address]


@pytest.fixture
def legacy(make_user) -> User:
    """An imported portal user (Section 1) with the contact details a registration keeps."""
    return make_user(
        username="legacy.user",
        email="legacy@old.example",
        mfa="none",
        address1="1 Elm Street",
        city="Jackson",
        state="MS",
        zip_code="39201",
        office_phone="+16015550143",
        fax="+12025550177",
    )


# --- findings ----------------------------------------------------------------------------


def test_found_a_double_submitted_create_tells_the_old_address_twice(
    client: Client, legacy: User
) -> None:
    """Create pressed twice (a double click): the second request reads the account before
    the first has saved the new address, so both send the notice. The flow engine's
    compare-and-set throws the second request's state away, but the notice has gone.
    Seen live on `make run`: two threads posting Create put two "New email address"
    emails to the old address in the outbox (the second request answered 400)."""
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "email")
    verify_email(client, S1, "work.email@clinic.example")
    twin = Client()
    twin.cookies = client.cookies  # the same browser: the second click
    original = SetPassword.handle
    calls: list[int] = []

    def handle(self, request, state):
        calls.append(1)
        if len(calls) == 1:
            # The second click arrives while the first is still hashing the password.
            create_password(twin, S1)
        return original(self, request, state)

    with mock.patch.object(SetPassword, "handle", handle):
        create_password(client, S1)
    assert len(calls) == 2
    legacy.refresh_from_db()
    assert legacy.email == "work.email@clinic.example"
    assert len(notices_to("legacy@old.example")) == 1
    assert Message.objects.filter(recipient=legacy, subject=NOTICE).count() == 1


def test_found_a_link_left_in_the_old_mailbox_shows_the_details_after_the_account_moved(
    client: Client, legacy: User
) -> None:
    """Anyone can ask Reset for a username: the link goes to the address on record, here
    an imported one the owner no longer reads. The owner then registers (Section 1) with
    their real work email. The link still in the old mailbox cannot complete anything any
    more (the POST answers "already complete"), yet for the rest of its 20 minutes its page
    shows the account's name, organization, address, phone and fax (and the new address,
    masked) to whoever reads that mailbox. "The link gives far more than this" no longer
    holds for an account that is registered."""
    Client().post("/registration-error/reset/", {"username": "legacy.user"})
    stale = registration_link("legacy@old.example")
    owner = Client()
    section1_login(owner, "legacy.user", PASSWORD)
    assert enroll(owner, S1, "email", "legacy.real@clinic.example").url == "/home/"
    assert notices_to("legacy@old.example")
    page = plant(client, stale)
    text = page_text(page)
    assert FAX_SHOWN not in text
    assert "1 Elm Street" not in text
    assert legacy.get_full_name() not in text
    assert legacy.organization.name not in text


def test_found_a_quoted_comma_work_email_is_verified_through_another_mailbox(
    client: Client,
    legacy: User,
    smtp_server: Collector,  # noqa: F811
) -> None:
    """The delivery worker splits a destination at commas (so a notice can go to two
    addresses), but a valid address may hold commas in a quoted local part. Someone who
    knows the password types the work email '"x,mallory@evil.example,y"@clinic.example':
    the code goes to mallory@evil.example, the account is saved with a "verified" address
    at the clinic's domain, every later code goes to Mallory, and the notice tells the
    owner the account moved to '"***@c***.example' -- their own clinic, as far as the
    mask shows."""
    work = '"x,mallory@evil.example,y"@clinic.example'
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "email")
    client.post(f"/{S1}/email-code/", {"action": "send", "email": work})
    recipients = [rcpt for _, rcpts, _ in smtp_server.messages for rcpt in rcpts]
    for _, rcpts, raw in smtp_server.messages:
        if "mallory@evil.example" in rcpts:  # what Mallory's mailbox received
            body = email.message_from_bytes(raw, policy=policy.default).get_content()
            code = re.search(r"\b(\d{6})\b", body).group(1)
            client.post(f"/{S1}/email-code/", {"action": "verify", "code": code})
            create_password(client, S1)
    assert "mallory@evil.example" not in recipients
    legacy.refresh_from_db()
    assert legacy.email == "legacy@old.example"


# --- the link page: what it shows, to whom ----------------------------------------------


def test_held_the_details_are_text_whatever_was_stored(
    client: Client, make_org, make_user
) -> None:
    org = make_org(name='<script>alert("org")</script> & Co')
    user = make_user(
        username="markup.names",
        mfa="none",
        organization=org,
        address2="<b>Suite</b>",
        city="</dd><dt>FAX</dt><dd>(601) 555-0100",
        fax="+12025550177",
    )
    user.first_name = "<img src=x onerror=alert(1)>"
    user.last_name = "{{ support_phone }}{% now 'Y' %}"
    user.save()
    page = plant(client, f"/registration-link/{issue_link(user, PURPOSE, 1200)}/")
    raw = page.content.decode()
    assert "<script>alert" not in raw and "<img src=x" not in raw and "<b>Suite" not in raw
    assert "&lt;script&gt;alert(&quot;org&quot;)&lt;/script&gt; &amp; Co" in raw
    assert "</dd><dt>FAX</dt><dd>(601)" not in raw
    assert raw.count("<dt>FAX</dt>") == 1
    assert "{{ support_phone }}{% now &#x27;Y&#x27; %}" in raw
    assert FAX_SHOWN in page_text(page)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("address1", "100 Main Street\u202e0510-555 )202("),  # right-to-left override
        ("address2", "Suite\u200b2"),  # zero-width space
        ("city", "Jackson\r\nFAX: (601) 555-0100"),
        ("city", "Jackson\x1b[2J"),
        ("first_name", "Dana\u2066"),
        ("last_name", "<b>Smith</b>"),
    ],
)
def test_held_registration_refuses_invisible_and_control_characters(
    org, field: str, value: str
) -> None:
    response = register(Client(), org, **{field: value})
    assert response.status_code == 200
    assert not User.objects.filter(username="dana.provider").exists()
    assert not EmailLink.objects.exists()


@pytest.mark.parametrize("case", ["expired", "used", "other-purpose", "inactive", "unknown"])
def test_held_a_link_that_cannot_be_used_shows_no_details(
    client: Client, legacy: User, case: str
) -> None:
    token = issue_link(legacy, "password-reset" if case == "other-purpose" else PURPOSE, 1200)
    if case == "expired":
        EmailLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    elif case == "used":
        EmailLink.objects.update(used_at=timezone.now())
    elif case == "inactive":
        User.objects.filter(pk=legacy.pk).update(is_active=False)
    elif case == "unknown":
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    page = plant(client, f"/registration-link/{token}/")
    text = page_text(page)
    assert "legacy.user" not in text and FAX_SHOWN not in text and "1 Elm Street" not in text
    assert 'name="link"' not in page.content.decode()


def test_held_a_signed_in_browser_sees_no_details(signed_in: Client, legacy: User) -> None:
    page = plant(signed_in, f"/registration-link/{issue_link(legacy, PURPOSE, 1200)}/")
    text = page_text(page)
    assert "You are signed in" in text
    assert "legacy.user" not in text and FAX_SHOWN not in text
    response = signed_in.post("/registration-link/", {"link": "x"})
    assert FAX_SHOWN not in page_text(response)
    assert EmailLink.objects.get().used_at is None


def test_held_showing_the_page_spends_nothing(client: Client, legacy: User) -> None:
    path = f"/registration-link/{issue_link(legacy, PURPOSE, 1200)}/"
    for _ in range(3):
        page = plant(client, path)
        assert FAX_SHOWN in page_text(page)
    assert EmailLink.objects.get().used_at is None
    assert User.objects.get(pk=legacy.pk).mfa_method == User.MfaMethod.NONE
    assert not OutboxMessage.objects.exists()
    used = client.post("/registration-link/", {"link": binding(page)})
    assert used.url == f"/{LINKED}/method/"


def test_held_a_link_planted_over_the_victims_shows_the_attackers_details_and_a_warning(
    client: Client, org, make_user
) -> None:
    victim = make_user(username="victim.v", mfa="none", fax="+16015550111")
    own_page = plant(client, f"/registration-link/{issue_link(victim, PURPOSE, 1200)}/")
    assert "(601) 555-0111" in page_text(own_page)
    register(
        Client(),
        org,
        username="mallory.m",
        email="mallory@evil.example",
        confirm_email="mallory@evil.example",
        first_name="Pat",
        last_name=victim.last_name,  # the victim's name, the attacker's fax
        fax="(202) 555-0177",
    )
    plant(client, registration_link("mallory@evil.example"))  # another tab
    response = client.post("/registration-link/", {"link": binding(own_page)})
    text = page_text(response)
    assert LINK_CHANGED in text
    assert "mallory.m" in text and FAX_SHOWN in text
    assert "(601) 555-0111" not in text
    assert not EmailLink.objects.filter(used_at__isnull=False).exists()


def test_held_a_staff_account_is_never_sent_a_link(client: Client, make_staff) -> None:
    staff = make_staff()
    assert send_registration_link(staff) is False
    User.objects.filter(pk=staff.pk).update(mfa_method=User.MfaMethod.NONE)
    client.post("/registration-error/reset/", {"username": staff.username})
    assert not EmailLink.objects.exists()
    assert not OutboxMessage.objects.exists()


# --- the "New email address" notice -------------------------------------------------------


def test_held_the_link_flow_tells_the_links_address_with_the_new_one_masked(
    client: Client, org
) -> None:
    register(client, org)
    open_link(client, registration_link("dana@clinic.example"))
    assert enroll(client, LINKED, "email", "dana.private@mailbox.example").url == "/home/"
    (notice,) = notices()
    assert notice.to == "dana@clinic.example"
    assert "d***@m***.example" in notice.body
    assert "dana.private" not in notice.body and "mailbox.example" not in notice.body
    user = User.objects.get(username="dana.provider")
    (message,) = Message.objects.filter(subject=NOTICE)
    assert message.recipient_id == user.pk and "dana.private" not in message.body


def test_held_change_then_another_address_sends_one_notice_naming_the_last(
    client: Client, legacy: User
) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "email")
    verify_email(client, S1, "first.try@clinic.example")
    assert client.post(f"/{S1}/password/", {"action": "change"}).url == f"/{S1}/email-code/"
    assert not notices()
    VerificationCode.objects.update(created_at=timezone.now() - timedelta(minutes=1))
    verify_email(client, S1, "second.try@other.example")
    assert create_password(client, S1).url == "/home/"
    (notice,) = notices()
    assert notice.to == "legacy@old.example"
    assert "to s***@o***.example" in notice.body
    assert "f***@c***" not in notice.body


def test_held_create_posted_again_after_it_advanced_sends_no_second_notice(
    client: Client, legacy: User
) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "phone")
    verify_email(client, S1, "work.email@clinic.example")
    assert create_password(client, S1).url == f"/{S1}/phone/"
    again = create_password(client, S1, "Another-Passphrase-77")
    assert again.status_code == 302 and again.url == f"/{S1}/phone/"
    assert len(notices_to("legacy@old.example")) == 1
    legacy.refresh_from_db()
    assert not legacy.check_password("Another-Passphrase-77")


@pytest.mark.parametrize(
    "typed",
    [
        "legacy@\u043eld.example",  # Cyrillic o
        "legacy@old.example.",
        "legacy+x@old.example",
        "l\u0435gacy@old.example",  # Cyrillic e in the local part: refused by the form
    ],
)
def test_held_a_look_alike_of_the_address_on_record_is_not_the_address(
    client: Client, legacy: User, typed: str
) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "email")
    sent = client.post(f"/{S1}/email-code/", {"action": "send", "email": typed})
    if "Verification code has been sent" not in page_text(sent):
        # Refused at the email step: the account's address cannot change this way.
        assert User.objects.get(pk=legacy.pk).email == "legacy@old.example"
        return
    client.post(f"/{S1}/email-code/", {"action": "verify", "code": email_code(typed)})
    assert create_password(client, S1).url == "/home/"
    legacy.refresh_from_db()
    assert legacy.email != "legacy@old.example"
    assert len(notices_to("legacy@old.example")) == 1


def test_held_no_notice_when_the_save_loses_the_address_to_another_account(
    client: Client, legacy: User, make_user, monkeypatch
) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "email")
    verify_email(client, S1, "race@clinic.example")
    make_user(email="race@clinic.example")
    monkeypatch.setattr("caregate.flows.mfa_registration.email_available", lambda *a: "")
    refused = create_password(client, S1)
    assert EMAIL_NOW_TAKEN in page_text(refused)
    assert not notices()
    assert not Message.objects.filter(subject=NOTICE).exists()


def test_held_reset_then_enrolling_again_tells_only_the_address_it_had(
    client: Client, legacy: User
) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    assert enroll(client, S1, "email", "first.box@clinic.example").url == "/home/"
    assert len(notices_to("legacy@old.example")) == 1
    legacy.refresh_from_db()
    reset_registration(legacy, "Your provider administrator")()
    again = Client()
    open_link(again, registration_link("first.box@clinic.example"))
    assert enroll(again, LINKED, "email", "second.box@clinic.example").url == "/home/"
    assert len(notices_to("legacy@old.example")) == 1
    (second,) = notices_to("first.box@clinic.example")
    assert "from f***@c***.example to s***@c***.example" in second.body
    assert not notices_to("second.box@clinic.example")


# --- the quoted-comma address, at each door (the fix of the third finding) ---------------
QUOTED = '"x,mallory@evil.example,y"@clinic.example'


@pytest.mark.parametrize(
    "address",
    [QUOTED, '"dana"@clinic.example', '"da na"@clinic.example', '"a\\"b"@clinic.example'],
)
def test_found_no_door_takes_an_address_with_a_quoted_local_part(
    address: str, tmp_path, org
) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from caregate.flows.forms import EmailForm
    from caregate.staff.identity import _address
    from tests.test_import_users import row, run_rejected, write_csv

    # A form (registration, the work email, Forgot password, email login)...
    form = EmailForm({"email": address})
    assert not form.is_valid() and form.errors["email"] == ["Enter a valid email address."]
    # ...an import...
    message, errors = run_rejected(write_csv(tmp_path / "users.csv", [row(org, 1, email=address)]))
    assert "1 row(s) rejected" in message and "is not valid" in errors
    assert not User.objects.filter(username="imported1").exists()
    # ...an operator's create_user...
    with pytest.raises(CommandError, match="not a valid email address"):
        call_command(
            "create_user",
            "--username=quoted.q",
            f"--email={address}",
            f"--password={PASSWORD}",
            f"--organization={org.npi}",
        )
    # ...and a staff identity provider's claim.
    assert _address(address) == ""


def test_found_a_stored_quoted_address_is_one_recipient_not_three(
    smtp_server: Collector,  # noqa: F811
) -> None:
    """An address stored before the doors refused quotes still goes to that one address."""
    from caregate.delivery import tasks

    tasks.enqueue("email", "notice", QUOTED, subject="s", body="b")
    recipients = [rcpt for _, rcpts, _ in smtp_server.messages for rcpt in rcpts]
    assert recipients == [QUOTED]
    # Two addresses of a notice (the old and the new), as notify() joins them: two.
    tasks.enqueue("email", "notice", "a@clinic.example, b@clinic.example", subject="s", body="b")
    assert smtp_server.messages[-1][1] == ["a@clinic.example", "b@clinic.example"]
