"""Account enumeration through the availability questions of registration.

Past the registration code, "Enter User Information" must tell a user that a username is
taken (they pick another), so those answers are rationed per client address and per flow
instance. Email addresses are never answered before the account is saved: a taken address
gets the same page as a free one (Section 2) or the same "code sent" (MFA enrollment).
"""

from __future__ import annotations

import html
import re
import time
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.test import Client

from caregate.accounts.models import User
from caregate.delivery.models import OutboxMessage
from caregate.flows.stages.user_info import EMAIL_TAKEN, TOO_MANY_USERNAMES, USERNAME_TAKEN
from caregate.verification import ratelimit
from caregate.verification.models import EmailLink
from tests.conftest import PASSWORD
from tests.registration_steps import (
    choose,
    create_password,
    email_code,
    register,
    section1_login,
    specify_organization,
    user_info,
)

pytestmark = pytest.mark.django_db
ATTEMPTS = 1000


@pytest.fixture(autouse=True)
def _one_rate_limit_window():
    """Freeze the rate limits' clock: a fixed window ending mid-test would reset a budget."""
    now = time.time()
    with mock.patch.object(ratelimit, "time", mock.Mock(time=lambda: now)):
        yield


def page_text(response) -> str:
    return html.unescape(response.content.decode())


def username_answer(response) -> str:
    match = re.search(
        r'id="id_username_error"[^>]*>(.*?)</p>', response.content.decode(), re.DOTALL
    )
    return html.unescape(match.group(1)).strip() if match else ""


def limits(settings, **scopes: tuple[int, int]) -> None:
    # The registration code itself is limited too; these tests are about what comes after.
    settings.CAREGATE_RATE_LIMITS = {
        **django_settings.CAREGATE_RATE_LIMITS,
        "registration:client": (10_000, 3600),
        "registration:npi": (10_000, 3600),
        "registration:npi-all": (10_000, 3600),
        **{scope.replace("_", ":"): value for scope, value in scopes.items()},
    }


def ask(client: Client, username: str):
    """Ask about one username without completing the form (FAX is missing), so the flow
    stays on the page: the attacker's loop."""
    return client.post("/register/user-info/", user_info(username=username, fax=""))


def probe_names(make_user, org, count: int) -> list[str]:
    """``count`` usernames, every tenth of them taken."""
    names = [f"probe{i:04d}" for i in range(count)]
    for name in names[::10]:
        make_user(username=name, organization=org)
    return names


def test_one_flow_asking_1000_usernames_gets_only_its_budget_of_answers(
    client: Client, org, make_user, settings
) -> None:
    limits(settings, availability_client=(10_000, 3600), availability_flow=(10, 3600))
    names = probe_names(make_user, org, ATTEMPTS)
    specify_organization(client, org.npi, "REG-CODE-1")
    answers = [username_answer(ask(client, name)) for name in names]
    answered = [a for a in answers if a != TOO_MANY_USERNAMES]
    assert len(answered) == 10
    assert set(answered) == {"", USERNAME_TAKEN}
    # Over the budget a taken name and a free name get the same words: no answer at all.
    assert answers[100] == answers[101] == TOO_MANY_USERNAMES
    assert User.objects.filter(username=names[100]).exists()
    assert not User.objects.filter(username=names[101]).exists()


def test_one_address_asking_1000_usernames_from_fresh_flows_is_limited(
    org, make_user, settings
) -> None:
    limits(settings, availability_client=(30, 3600), availability_flow=(10, 3600))
    names = probe_names(make_user, org, ATTEMPTS)
    answers: list[str] = []
    # A new flow instance (a new session) every 10 questions: the per-flow budget resets,
    # the address's does not.
    for start in range(0, ATTEMPTS, 10):
        client = Client(REMOTE_ADDR="203.0.113.7")
        specify_organization(client, org.npi, "REG-CODE-1")
        answers += [username_answer(ask(client, name)) for name in names[start : start + 10]]
    answered = [a for a in answers if a != TOO_MANY_USERNAMES]
    assert len(answered) == 30
    # Another address still gets its answers: the limit is per address, not global.
    other = Client(REMOTE_ADDR="198.51.100.9")
    specify_organization(other, org.npi, "REG-CODE-1")
    assert username_answer(ask(other, names[500])) == USERNAME_TAKEN


def test_over_the_limit_a_complete_form_does_not_create_the_account(
    client: Client, org, make_user, settings
) -> None:
    # Otherwise the attacker would read the answer from whether the account gets created.
    limits(settings, availability_client=(10_000, 3600), availability_flow=(2, 3600))
    specify_organization(client, org.npi, "REG-CODE-1")
    ask(client, "first.try")
    ask(client, "second.try")
    response = client.post("/register/user-info/", user_info(username="third.try"))
    assert response.status_code == 200
    assert username_answer(response) == TOO_MANY_USERNAMES
    assert not User.objects.filter(username="third.try").exists()
    assert not OutboxMessage.objects.exists()


def test_resubmitting_the_same_username_is_not_a_new_question(
    client: Client, org, settings
) -> None:
    limits(settings, availability_client=(10_000, 3600), availability_flow=(2, 3600))
    specify_organization(client, org.npi, "REG-CODE-1")
    for _ in range(5):  # the user fixes other fields one at a time
        assert username_answer(ask(client, "Dana.Provider")) == ""
    response = client.post("/register/user-info/", user_info(username="dana.provider"))
    assert "Registration complete" in page_text(response)


def neutral(text: str, *emails: str) -> str:
    """The page without the address typed, the CSRF token and the countdown."""
    for email in emails:
        text = text.replace(email, "EMAIL")
    text = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", text)
    # The code's countdown (milliseconds left) and its expiry time ("at 6:19:11 AM")
    # move between two requests.
    text = re.sub(r"\d{1,2}:\d{2}:\d{2}", "H:M:S", text)
    return re.sub(r'(data-[a-z-]+)="\d+"', r'\1="N"', text)


def test_a_taken_email_gets_the_same_page_as_a_free_one(org, make_org, make_user) -> None:
    make_user(email="taken@clinic.example", organization=make_org(name="Lakeside Pediatrics"))
    taken = register(Client(), org, username="probe.one", **both("taken@clinic.example"))
    free = register(Client(), org, username="probe.two", **both("free@clinic.example"))
    assert taken.status_code == free.status_code == 200
    assert neutral(page_text(taken), "taken@clinic.example") == neutral(
        page_text(free), "free@clinic.example"
    )
    assert EMAIL_TAKEN not in page_text(taken)


def test_a_taken_email_is_still_refused_at_save(org, make_org, make_user) -> None:
    holder = make_user(email="taken@clinic.example", organization=make_org(name="Lakeside"))
    count = User.objects.count()
    register(Client(), org, username="probe.one", **both("TAKEN@clinic.example"))
    assert User.objects.count() == count
    assert not User.objects.filter(username="probe.one").exists()
    holder.refresh_from_db()
    assert holder.organization.name == "Lakeside"
    # The owner of the mailbox is told, without a link that would open anything.
    notice = OutboxMessage.objects.get(to="taken@clinic.example")
    assert EMAIL_TAKEN in notice.body
    assert not EmailLink.objects.exists()


def test_registration_with_taken_email_does_not_change_username_availability(
    org, make_user
) -> None:
    """Found by the attacker review: register a fresh username with the target address,
    then ask for that username again. Held by an account (free address) or by the
    reservation (taken address), it answers "not available" either way."""
    make_user(email="taken@clinic.example")
    answers = []
    for n, target in enumerate(["taken@clinic.example", "free.person@clinic.example"]):
        register(Client(), org, username=f"Probe.{n}", **both(target))
        again = register(
            Client(),
            org,
            username=f"probe.{n}",
            email="x@clinic.example",
            confirm_email="y@clinic.example",
        )
        answers.append(USERNAME_TAKEN in page_text(again))
    assert answers == [True, True]


def test_repeated_registrations_with_a_taken_email_do_not_flood_its_owner(
    org, make_user, settings
) -> None:
    limits(settings)
    make_user(email="taken@clinic.example")
    pages = [
        register(Client(), org, username=f"probe{i}", **both("taken@clinic.example"))
        for i in range(6)
    ]
    assert all("Registration complete" in page_text(page) for page in pages)
    assert OutboxMessage.objects.filter(to="taken@clinic.example").count() == 3


def both(email: str) -> dict[str, str]:
    return {"email": email, "confirm_email": email.lower()}


# --- MFA enrollment (Section 1 and the emailed link) -----------------------------------


def send_code_page(make_user, email: str):
    user = make_user(mfa="none")
    client = Client()
    section1_login(client, user.username, PASSWORD)
    choose(client, "mfa-registration", "email")
    return client, client.post("/mfa-registration/email-code/", {"action": "send", "email": email})


def test_enrollment_email_step_answers_the_same_for_a_taken_address(make_user) -> None:
    make_user(email="taken@clinic.example")
    _, taken = send_code_page(make_user, "taken@clinic.example")
    _, free = send_code_page(make_user, "free@clinic.example")
    assert taken.status_code == free.status_code == 200
    assert neutral(page_text(taken), "taken@clinic.example") == neutral(
        page_text(free), "free@clinic.example"
    )
    assert EMAIL_TAKEN not in page_text(taken)


def test_enrollment_refuses_a_taken_address_at_save_even_with_its_code(make_user) -> None:
    holder = make_user(email="taken@clinic.example")
    client, _ = send_code_page(make_user, "taken@clinic.example")
    verified = client.post(
        "/mfa-registration/email-code/",
        {"action": "verify", "code": email_code("taken@clinic.example")},
    )
    assert verified.url == "/mfa-registration/password/"
    response = create_password(client, "mfa-registration")
    assert response.status_code == 200
    assert EMAIL_TAKEN in page_text(response)
    assert User.objects.filter(email="taken@clinic.example").get() == holder
