"""The support console (issue #9): support staff find any user across organizations, see
their registration and recent events, and reset a registration, deactivate or reactivate,
each with a reason and an audit event naming the staff member."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from caregate.accounts.models import Organization, SignedInSession, User
from caregate.audit.log import record
from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.portal.models import Message
from caregate.verification.models import RememberedBrowser
from tests.conftest import PASSWORD, sign_in_as
from tests.phone_steps import is_signed_in
from tests.test_manage_users import named, password_accepted, sign_in

pytestmark = pytest.mark.django_db

SEARCH = "/support/"
REASON = "Caller verified by callback; lost their phone."
# A row of the details page's Recent events: time, then event, outcome, client address.
EVENT_ROW = re.compile(r"<tr><td>[^<]+</td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>")


def detail_url(user: User) -> str:
    return f"/support/users/{user.pk}/"


def action_url(user_id: int, action: str) -> str:
    return f"/support/users/{user_id}/{action}/"


def post_action(
    client: Client, user_id: int, action: str, *, reason: str = REASON, form_user: object = None
):
    data = {"user": user_id if form_user is None else form_user, "reason": reason}
    return client.post(action_url(user_id, action), data)


def text(response) -> str:
    return " ".join(response.content.decode().split())


@pytest.fixture
def riverside(make_org) -> Organization:
    return make_org(name="Riverside Family Clinic", npi="1234567893")


@pytest.fixture
def lakeside(make_org) -> Organization:
    return make_org(name="Lakeside Clinic")


@pytest.fixture
def member(make_user, riverside) -> User:
    """Daisey Duck (dduck2021) of Riverside, registered with a phone."""
    user = make_user(
        username="dduck2021", email="daisey@clinic.example", mfa="phone", organization=riverside
    )
    user.mfa_registered_at = user.date_joined
    return named(user, "Daisey", "Duck")


@pytest.fixture
def other(make_user, lakeside) -> User:
    """Dale Duck of Lakeside, registered by email: another organization's user."""
    user = make_user(username="dale.d", email="dale@lakeside.example", organization=lakeside)
    return named(user, "Dale", "Duck")


@pytest.fixture
def support(make_staff) -> User:
    return make_staff(roles=("staff", "support"))


@pytest.fixture
def support_client(support) -> Client:
    return sign_in_as(Client(), support)


# --- search --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "duck",  # last name
        "Daisey",  # first name
        "daisey duck",  # first last
        "Duck, Daisey",  # last, first
        "dduck",  # username prefix
        "DDUCK2021",  # username, exact, any case
        "DAISEY@",  # email prefix
        "daisey@clinic.example",  # email, exact
        "1234567893",  # the organization's NPI
    ],
)
def test_search_finds_a_user_by_each_kind(support_client, member, other, query):
    page = text(support_client.get(SEARCH, {"q": query}))
    assert f'<a href="{detail_url(member)}">Daisey Duck</a>' in page, query
    assert "Riverside Family Clinic (NPI 1234567893)" in page
    assert "Phone (XXX-XXX-0143)" in page and "<td>Active</td>" in page


def test_search_spans_every_organization(support_client, member, other, lakeside):
    page = text(support_client.get(SEARCH, {"q": "duck"}))
    assert "Users found: 2" in page
    assert "Daisey Duck" in page and "Dale Duck" in page
    assert "Riverside Family Clinic (NPI 1234567893)" in page
    assert f"Lakeside Clinic (NPI {lakeside.npi})" in page
    assert page.index("Daisey Duck") < page.index("Dale Duck")  # name order


def test_an_npi_finds_only_that_organizations_users(support_client, member, other, make_user):
    colleague = named(make_user(username="mmouse", organization=member.organization), "M", "M")
    page = text(support_client.get(SEARCH, {"q": "1234567893"}))
    assert "Users found: 2" in page
    assert colleague.username in page and member.username in page
    assert other.username not in page


@pytest.mark.parametrize("query", ["uck", "123456789", "12345678930", "%", "_", "d%"])
def test_search_is_by_prefix_and_whole_npis(support_client, member, query):
    page = text(support_client.get(SEARCH, {"q": query}))
    assert "dduck2021" not in page, query
    assert "No records found." in page


def test_nothing_is_listed_before_a_search(support_client, member):
    page = text(support_client.get(SEARCH))
    assert "Name, username, email or NPI" in page
    assert "dduck2021" not in page and "Users found" not in page


@pytest.mark.parametrize(
    ("query", "message"),
    [("x" * 101, "A search is at most 100 characters."), ("du\x00ck", "Null characters")],
)
def test_bad_search_strings_show_an_error_and_no_users(support_client, member, query, message):
    response = support_client.get(SEARCH, {"q": query})
    assert response.status_code == 200
    assert message in text(response) and "dduck2021" not in text(response)


def test_results_are_25_a_page_with_the_search_kept(support_client, make_user, lakeside):
    for n in range(27):
        named(make_user(username=f"smith{n:02d}", organization=lakeside), "Lee", f"Smith{n:02d}")
    first = text(support_client.get(SEARCH, {"q": "smith"}))
    assert "Users found: 27" in first and "Page 1 of 2" in first
    assert "q=smith&amp;page=2" in first
    assert "<td>smith24</td>" in first and "<td>smith25</td>" not in first
    second = text(support_client.get(SEARCH, {"q": "smith", "page": "2"}))
    assert "<td>smith25</td>" in second and "<td>smith26</td>" in second
    assert "<td>smith00</td>" not in second


def test_searches_are_audited_with_the_staff_member(support_client, support, member):
    support_client.get(SEARCH, {"q": "duck"})
    event = AuditEvent.objects.get(event="support.search")
    assert event.user_id_snapshot == support.pk
    assert event.detail["query"] == "duck" and event.detail["found"] == 1


def test_staff_accounts_are_found_as_operator_staff(support_client, make_staff):
    colleague = make_staff(roles=("staff",))
    page = text(support_client.get(SEARCH, {"q": colleague.username}))
    assert "Operator staff" in page and "Staff single sign-on" in page


# --- a user's details -------------------------------------------------------------------


def test_details_show_the_account_registration_and_sessions(support_client, make_user, other):
    signed_in_user = make_user(username="signedin", organization=other.organization)
    sign_in(Client(), signed_in_user)
    page = text(support_client.get(detail_url(signed_in_user)))
    assert "ACCOUNT INFORMATION" in page
    assert f"<dd>{signed_in_user.email}</dd>" in page
    assert f"Lakeside Clinic (NPI {other.organization.npi})" in page
    assert "<dt>MFA REGISTRATION</dt><dd>Email" in page
    assert "<dt>SIGNED-IN SESSIONS</dt><dd>1</dd>" in page
    assert "<dt>STATUS</dt><dd>Active</dd>" in page and "Standard user" in page
    for button in ["RESET REGISTRATION", "DEACTIVATE USER"]:
        assert button in page
    assert "REACTIVATE USER" not in page


def test_details_show_the_users_recent_events_and_nothing_else(support_client, email_user, other):
    sign_in(Client(), email_user)  # another user's events
    sign_in(Client(), other)
    page = support_client.get(detail_url(other)).content.decode()
    events = page.split("Recent events")[1]
    rows = re.findall(
        r"<tr><td>[^<]+</td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", events
    )
    assert rows == [
        ("signin", "success", "127.0.0.1"),
        ("code.verify", "ok", "127.0.0.1"),
        ("code.send", "sent", "127.0.0.1"),
        ("signin.password", "success", "127.0.0.1"),
    ]
    # Never an event's detail (these events carry channel and method).
    assert "channel" not in events and "method" not in events


def test_only_the_last_20_events_are_shown_newest_first(support_client, member):
    for n in range(25):
        record("test.event", f"n{n:02d}", user=member)
    page = support_client.get(detail_url(member)).content.decode()
    outcomes = re.findall(r"<td>test\.event</td><td>(n\d\d)</td>", page)
    assert outcomes == [f"n{n:02d}" for n in range(24, 4, -1)]


def test_a_staff_accounts_details_offer_no_action(support_client, make_staff):
    colleague = make_staff(roles=("staff",))
    page = text(support_client.get(detail_url(colleague)))
    assert "Staff accounts come from the identity provider" in page
    assert "Operator staff: Staff" in page
    assert "RESET REGISTRATION" not in page and "DEACTIVATE USER" not in page


# --- Reset Registration ---------------------------------------------------------------


def test_the_confirmation_names_the_user_and_asks_for_a_reason(support_client, member):
    page = support_client.get(action_url(member.pk, "reset-registration")).content.decode()
    assert "Reset the registration of Daisey Duck (dduck2021)?" in page
    assert '<label for="id_reason">Reason</label>' in page
    assert 'maxlength="500"' in page and "required" in page
    assert f'name="user" value="{member.pk}"' in page
    assert User.objects.get(pk=member.pk).mfa_method == User.MfaMethod.PHONE


def test_reset_clears_the_registration_and_tells_the_user(support_client, support, member):
    User.objects.filter(pk=member.pk).update(mfa_method="email", phone_number="")
    member_browser = sign_in(Client(), member, remember=True)
    User.objects.filter(pk=member.pk).update(mfa_method="phone", phone_number="+12025550143")

    response = post_action(support_client, member.pk, "reset-registration", reason=f"  {REASON} ")
    assert response.status_code == 302 and response.url == detail_url(member)

    member.refresh_from_db()
    assert member.mfa_method == User.MfaMethod.NONE and member.phone_number == ""
    assert member.mfa_registered_at is None and member.check_password(PASSWORD)
    assert not SignedInSession.objects.filter(user=member).exists()
    assert not RememberedBrowser.objects.filter(user=member).exists()
    member_browser.get("/home/")
    assert not is_signed_in(member_browser)

    link = OutboxMessage.objects.get(to=member.email, subject__icontains="complete")
    assert "20 minutes" in link.body
    notice = Message.objects.get(recipient=member, subject="Your registration was reset")
    assert f"Our support team ({support.display_name}) reset your" in notice.body
    assert "provider administrator" not in notice.body
    mail = OutboxMessage.objects.get(to=member.email, subject__icontains="was reset")
    assert "Our support team" in mail.body

    event = AuditEvent.objects.get(event="support.reset-registration")
    assert event.outcome == "success" and event.user_id_snapshot == member.pk
    assert event.detail["staff_id"] == support.pk
    assert event.detail["staff_username"] == support.username
    assert event.detail["staff_email"] == support.email
    assert event.detail["reason"] == REASON  # trimmed
    assert event.detail["organization_id"] == member.organization_id

    page = text(support_client.get(detail_url(member)))
    assert "The registration of Daisey Duck (dduck2021) was reset." in page
    assert "They were emailed a link to register again; it works for 20 minutes." in page
    assert "<dt>MFA REGISTRATION</dt><dd>Not registered</dd>" in page
    assert "support.reset-registration" in page  # now among the user's recent events


def test_reset_of_a_deactivated_user_is_refused(support_client, member):
    User.objects.filter(pk=member.pk).update(is_active=False)
    response = post_action(support_client, member.pk, "reset-registration")
    assert response.status_code == 302
    assert User.objects.get(pk=member.pk).mfa_method == User.MfaMethod.PHONE
    assert not OutboxMessage.objects.filter(to=member.email).exists()
    event = AuditEvent.objects.get(event="support.reset-registration")
    assert event.outcome == "refused" and event.detail["reason"] == REASON
    assert "is deactivated: reactivate first." in text(support_client.get(detail_url(member)))


# --- deactivate and reactivate --------------------------------------------------------


def test_deactivate_ends_access_and_reactivate_restores_it(support_client, support, other):
    other_browser = sign_in(Client(), other, remember=True)
    response = post_action(support_client, other.pk, "deactivate")
    assert response.status_code == 302 and response.url == detail_url(other)
    other.refresh_from_db()
    assert not other.is_active
    assert not SignedInSession.objects.filter(user=other).exists()
    assert not RememberedBrowser.objects.filter(user=other).exists()
    other_browser.get("/home/")
    assert not is_signed_in(other_browser)
    assert not password_accepted(other)
    event = AuditEvent.objects.get(event="support.deactivate")
    assert event.outcome == "success" and event.user_id_snapshot == other.pk
    assert event.detail["staff_username"] == support.username
    assert event.detail["reason"] == REASON

    page = text(support_client.get(detail_url(other)))
    assert "Dale Duck (dale.d) was deactivated." in page and "REACTIVATE USER" in page
    assert "RESET REGISTRATION" not in page
    assert post_action(support_client, other.pk, "reactivate").status_code == 302
    assert password_accepted(other)
    assert AuditEvent.objects.get(event="support.reactivate").outcome == "success"


def test_deactivation_and_reactivation_are_told_to_the_user(support_client, support, other):
    post_action(support_client, other.pk, "deactivate")
    post_action(support_client, other.pk, "reactivate")
    sent = OutboxMessage.objects.filter(to=other.email).order_by("id")
    subjects = [m.subject.split(": ", 1)[1] for m in sent]
    assert subjects == ["Your account was deactivated", "Your account was reactivated"]
    for mail in sent:
        assert f"Our support team ({support.display_name})" in mail.body
    assert Message.objects.filter(recipient=other).count() == 2


def test_deactivating_twice_is_refused(support_client, other):
    post_action(support_client, other.pk, "deactivate")
    post_action(support_client, other.pk, "deactivate")
    outcomes = AuditEvent.objects.filter(event="support.deactivate").values_list(
        "outcome", flat=True
    )
    assert list(outcomes) == ["success", "refused"]


def test_the_last_administrator_can_be_deactivated_after_a_warning(support_client, make_user):
    admin = named(make_user(username="only.admin", is_org_admin=True), "Only", "Admin")
    page = text(support_client.get(action_url(admin.pk, "deactivate")))
    assert "is the last active provider administrator of Test Clinic" in page
    assert post_action(support_client, admin.pk, "deactivate").status_code == 302
    assert not User.objects.get(pk=admin.pk).is_active


def test_no_warning_while_another_administrator_remains(support_client, make_user):
    admin = make_user(is_org_admin=True)
    make_user(is_org_admin=True)
    page = text(support_client.get(action_url(admin.pk, "deactivate")))
    assert "last active provider administrator" not in page


def test_manage_users_resets_still_name_the_administrator(make_user, member):
    admin = named(
        make_user(username="boss", is_org_admin=True, organization=member.organization), "B", "S"
    )
    client = sign_in(Client(), admin)
    client.post(f"/setup/users/{member.pk}/reset-registration/", {"user": member.pk})
    notice = Message.objects.get(recipient=member)
    assert "Your provider administrator B S reset your" in notice.body


# --- the menu and the staff home page -------------------------------------------------


def nav_labels(page: str) -> list[str]:
    nav = re.search(r'<nav class="portal-nav" aria-label="Portal">(.*?)</nav>', page, re.S)
    assert nav, "no portal navigation"
    return re.findall(r'<a href="[^"]*"[^>]*>([^<]+)</a>', nav.group(1))


def test_support_staff_get_support_in_the_menu_and_a_working_home(support_client):
    response = support_client.get("/home/")
    assert response.status_code == 200
    page = text(response)
    assert nav_labels(page)[-2:] == ["SUPPORT", "Help"]
    assert "0 NEW MESSAGES" in page and "No records found." in page
    assert "Contract: <strong>—</strong>" in page
    support_page = support_client.get(SEARCH).content.decode()
    assert '<a href="/support/" aria-current="page">SUPPORT</a>' in support_page


def test_nobody_else_gets_support_in_the_menu(client, make_staff, email_user):
    for user in [make_staff(roles=("staff",)), email_user]:
        page = sign_in_as(Client(), user).get("/home/").content.decode()
        assert "SUPPORT" not in nav_labels(page), user.username
