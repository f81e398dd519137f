"""Setup → Manage Users and the guide's "Provider Administrator Reset Registration": who may
use it, the list (search, pages, bad input), and everything a reset, a deactivation and a
role change do."""

from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client

from caregate.accounts.models import SignedInSession, User
from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.portal import manage_users
from caregate.portal.models import Message
from caregate.verification.models import RememberedBrowser
from tests.conftest import PASSWORD
from tests.phone_steps import EMAIL_CODE, EMAIL_CREDENTIALS, email_login, is_signed_in, start
from tests.registration_steps import enroll, open_link, registration_link, section1_login

pytestmark = pytest.mark.django_db

LIST = "/setup/users/"


def detail_url(user: User) -> str:
    return f"/setup/users/{user.pk}/"


def action_url(user_id: int, action: str) -> str:
    return f"/setup/users/{user_id}/{action}/"


def sign_in(client: Client, user: User, *, remember: bool = False) -> Client:
    """The whole email login (the session registry and Remember Me rows are real)."""
    response = email_login(client, user, remember=remember)
    assert response.status_code == 302 and response.url == "/home/", response
    return client


def password_accepted(user: User) -> bool:
    """LOGIN WITH EMAIL → email and password: whether the sign-in goes on to the code."""
    client = Client()
    start(client, "email")
    response = client.post(EMAIL_CREDENTIALS, {"email": user.email, "password": PASSWORD})
    return response.status_code == 302 and response.url == EMAIL_CODE


def named(user: User, first: str, last: str) -> User:
    user.first_name, user.last_name = first, last
    user.save()
    return user


def snapshot(user: User) -> tuple:
    """Everything an action could change about a user."""
    user.refresh_from_db()
    return (
        user.is_active,
        user.is_org_admin,
        user.mfa_method,
        user.phone_number,
        user.mfa_registered_at,
        user.password,
        user.organization_id,
        SignedInSession.objects.filter(user=user).count(),
        RememberedBrowser.objects.filter(user=user).count(),
    )


def post_action(client: Client, user_id: int, action: str, form_user: object = None):
    return client.post(
        action_url(user_id, action), {"user": user_id if form_user is None else form_user}
    )


@pytest.fixture
def admin(make_user) -> User:
    return named(make_user(username="daisy.admin", is_org_admin=True), "Daisy", "Admin")


@pytest.fixture
def admin_client(client: Client, admin: User) -> Client:
    return sign_in(client, admin)


@pytest.fixture
def member(make_user) -> User:
    """Daisey Duck (dduck2021), the guide's example: a phone user of the admin's org."""
    user = make_user(username="dduck2021", email="daisey@clinic.example", mfa="phone")
    user.mfa_registered_at = user.date_joined
    return named(user, "Daisey", "Duck")


# --- who may use Manage Users -------------------------------------------------------------


def test_the_list_shows_the_organizations_users_only(admin_client, member, make_user, make_org):
    stranger = make_user(username="other.org.user", organization=make_org(name="Other Clinic"))
    page = admin_client.get(LIST).content.decode()
    assert "Manage Users (2)" in page  # the admin and Daisey Duck
    assert "Daisey Duck (dduck2021)" in page
    assert stranger.username not in page and stranger.email not in page


def test_a_standard_user_gets_403_on_every_manage_users_page(client, member, email_user):
    sign_in(client, email_user)
    before = snapshot(member)
    for url in [LIST, detail_url(member), action_url(member.pk, "reset-registration")]:
        response = client.get(url)
        assert response.status_code == 403, url
        assert "Manage Users is for provider administrators" in response.content.decode()
    for action in manage_users.ACTIONS:
        assert post_action(client, member.pk, action).status_code == 403
    assert snapshot(member) == before


def test_signed_out_visitors_are_sent_to_the_login_page(client, member):
    for url in [LIST, detail_url(member)]:
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/?next="), url


def test_an_admin_without_an_organization_is_refused(client, make_user):
    loner = make_user(is_org_admin=True)
    sign_in(client, loner)
    User.objects.filter(pk=loner.pk).update(organization=None)
    assert client.get(LIST).status_code == 403


def test_an_admin_whose_role_is_removed_loses_the_pages_at_the_next_request(
    admin_client, admin, member
):
    assert admin_client.get(LIST).status_code == 200
    User.objects.filter(pk=admin.pk).update(is_org_admin=False)
    assert admin_client.get(LIST).status_code == 403
    assert post_action(admin_client, member.pk, "reset-registration").status_code == 403


# --- the list: search and pages -----------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "duck",
        "DUCK",
        "Du",
        "daisey",
        "dduck",
        "DDUCK2021",
        "daisey@",
        "Daisey Duck",
        "duck daisey",
        "Duck, Daisey",
    ],
)
def test_search_finds_by_name_username_or_email_prefix_in_any_case(admin_client, member, query):
    page = admin_client.get(LIST, {"q": query}).content.decode()
    assert "Daisey Duck (dduck2021)" in page, query
    assert "Daisy Admin (daisy.admin)" not in page


@pytest.mark.parametrize(
    "query",
    ["uck", "clinic.example", "aisey", "Duck Daisy", "%", "_", "d%", "\\", "Daisey Duck Extra"],
)
def test_search_is_by_prefix_and_wildcards_are_literal(admin_client, member, query):
    page = admin_client.get(LIST, {"q": query}).content.decode()
    assert "Daisey Duck (dduck2021)" not in page, query
    assert "No records found." in page


def test_search_never_leaves_the_organization(admin_client, make_user, make_org):
    make_user(username="dduck-elsewhere", organization=make_org(name="Other Clinic"))
    page = admin_client.get(LIST, {"q": "dduck"}).content.decode()
    assert "dduck-elsewhere" not in page and "Manage Users (0)" in page


@pytest.mark.parametrize(
    ("query", "message"),
    [("x" * 101, "A search is at most 100 characters."), ("du\x00ck", "Null characters")],
)
def test_bad_search_strings_show_an_error_and_no_users(admin_client, member, query, message):
    response = admin_client.get(LIST, {"q": query})
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page and "Daisey Duck" not in page


def test_users_are_listed_25_a_page_in_name_order(admin_client, admin, make_user):
    for n in range(30):
        named(make_user(username=f"pat{n:02d}"), "Pat", f"Zed{n:02d}")
    first = admin_client.get(LIST).content.decode()
    assert "Manage Users (31)" in first and "Page 1 of 2" in first
    assert first.index("Daisy Admin") < first.index("Pat Zed00") < first.index("Pat Zed23")
    assert "Pat Zed24" not in first
    second = admin_client.get(LIST, {"page": "2"}).content.decode()
    assert "Pat Zed24" in second and "Pat Zed29" in second and "Pat Zed23" not in second


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("abc", 1),
        ("0", 2),
        ("-1", 2),
        ("999999999999999999999999", 2),
        ("1e3", 1),
        ("", 1),
        ("2.0", 1),
        ("\x00", 1),
        ("1" * 5000, 2),
    ],
)
def test_bad_page_numbers_show_the_nearest_page(admin_client, make_user, number, expected):
    for n in range(30):
        make_user(username=f"pat{n:02d}")
    response = admin_client.get(LIST, {"page": number})
    assert response.status_code == 200
    assert f"Page {expected} of 2" in response.content.decode()


def test_search_results_are_paged_with_the_search_kept(admin_client, make_user):
    for n in range(27):
        named(make_user(username=f"smith{n:02d}"), "Lee", f"Smith{n:02d}")
    first = admin_client.get(LIST, {"q": "smith"}).content.decode()
    assert "Manage Users (27)" in first and "q=smith&amp;page=2" in first
    second = admin_client.get(LIST, {"q": "smith", "page": "2"}).content.decode()
    assert "Lee Smith26" in second and "Lee Smith00" not in second


def test_the_list_is_get_only(admin_client):
    assert admin_client.post(LIST, {"q": "x"}).status_code == 405


# --- the details page --------------------------------------------------------------------


def test_details_show_account_information_and_the_actions(admin_client, member):
    page = admin_client.get(detail_url(member)).content.decode()
    for text in [
        "Daisey Duck (dduck2021)",
        "ACCOUNT INFORMATION",
        "daisey@clinic.example",
        "Phone (XXX-XXX-0143)",
        "Standard user",
        "RESET REGISTRATION",
        "DEACTIVATE USER",
        "MAKE ADMINISTRATOR",
    ]:
        assert text in page, text
    assert "REACTIVATE USER" not in page and "REMOVE ADMINISTRATOR" not in page


def test_an_admins_own_details_offer_only_removing_the_role(admin_client, admin):
    page = admin_client.get(detail_url(admin)).content.decode()
    assert "REMOVE ADMINISTRATOR" in page
    assert "RESET REGISTRATION" not in page and "DEACTIVATE USER" not in page


@pytest.mark.parametrize(
    "url",
    [
        "/setup/users/0/",
        "/setup/users/999999/",
        "/setup/users/99999999999999999999999/",
        "/setup/users/abc/",
        "/setup/users/-1/",
    ],
)
def test_bad_ids_in_the_details_address_are_404(admin_client, url):
    assert admin_client.get(url).status_code == 404


def test_an_unknown_action_is_404(admin_client, member):
    before = snapshot(member)
    assert admin_client.get(action_url(member.pk, "delete")).status_code == 404
    assert post_action(admin_client, member.pk, "delete").status_code == 404
    assert snapshot(member) == before


# --- Reset Registration ------------------------------------------------------------------


def test_the_confirmation_names_the_user_and_changes_nothing(admin_client, member):
    before = snapshot(member)
    page = admin_client.get(action_url(member.pk, "reset-registration")).content.decode()
    assert "Reset the registration of Daisey Duck (dduck2021)?" in page
    assert 'name="csrfmiddlewaretoken"' in page and f'name="user" value="{member.pk}"' in page
    assert snapshot(member) == before


def test_reset_clears_the_registration_and_everything_it_guards(admin_client, admin, member):
    member_browser = Client()
    User.objects.filter(pk=member.pk).update(mfa_method="email", phone_number="")
    sign_in(member_browser, member, remember=True)  # a session and a remembered browser
    User.objects.filter(pk=member.pk).update(mfa_method="phone", phone_number="+12025550143")
    assert RememberedBrowser.objects.filter(user=member).count() == 1
    password_before = User.objects.get(pk=member.pk).password

    response = post_action(admin_client, member.pk, "reset-registration")
    assert response.status_code == 302 and response.url == detail_url(member)

    member.refresh_from_db()
    assert member.mfa_method == User.MfaMethod.NONE
    assert member.phone_number == "" and member.mfa_registered_at is None
    assert member.password == password_before and member.check_password(PASSWORD)
    assert member.is_active
    assert not RememberedBrowser.objects.filter(user=member).exists()
    assert not SignedInSession.objects.filter(user=member).exists()
    member_browser.get("/home/")
    assert not is_signed_in(member_browser)  # the member's session was ended
    assert is_signed_in(admin_client)  # the administrator's was not

    link_mail = OutboxMessage.objects.filter(to=member.email, subject__icontains="complete")
    assert link_mail.count() == 1 and "20 minutes" in link_mail.get().body
    notice = Message.objects.get(recipient=member, subject="Your registration was reset")
    assert notice.subject == "Your registration was reset"
    assert "Daisy Admin" in notice.body and "click here" in notice.body
    event = AuditEvent.objects.get(event="manage-users.reset-registration")
    assert event.outcome == "success"
    assert event.user_id_snapshot == member.pk and event.username == "dduck2021"
    assert event.detail["admin_id"] == admin.pk
    assert event.detail["admin_username"] == "daisy.admin"
    assert event.created_at is not None
    page = admin_client.get(detail_url(member)).content.decode()
    assert "The registration of Daisey Duck (dduck2021) was reset." in page
    assert "Not registered" in page


def test_the_admin_is_told_whether_the_link_email_went(admin_client, member, email_user):
    post_action(admin_client, member.pk, "reset-registration")
    page = admin_client.get(detail_url(member)).content.decode()
    assert "They were emailed a link to register again; it works for 20 minutes." in page
    with mock.patch.object(manage_users, "send_registration_link", return_value=False):
        post_action(admin_client, email_user.pk, "reset-registration")
    page = admin_client.get(detail_url(email_user)).content.decode()
    assert "could not be sent" in page and "They were emailed" not in page
    assert User.objects.get(pk=email_user.pk).mfa_method == User.MfaMethod.NONE


def test_after_a_reset_the_emailed_link_registers_the_user_again(admin_client, member):
    post_action(admin_client, member.pk, "reset-registration")
    browser = Client()
    response = open_link(browser, registration_link(member.email))
    assert response.status_code == 302 and response.url == "/complete-registration/method/"
    response = enroll(browser, "complete-registration", "email", member.email)
    assert response.status_code == 302 and response.url == "/home/", response
    member.refresh_from_db()
    assert member.mfa_method == User.MfaMethod.EMAIL and member.mfa_registered_at is not None
    assert is_signed_in(browser)


def test_after_a_reset_click_here_works_with_the_old_password(admin_client, member):
    post_action(admin_client, member.pk, "reset-registration")
    browser = Client()
    response = section1_login(browser, "dduck2021", PASSWORD)
    assert response.status_code == 302 and response.url == "/mfa-registration/method/"
    response = enroll(browser, "mfa-registration", "email", member.email)
    assert response.status_code == 302 and response.url == "/home/"
    assert browser.session[SESSION_KEY] == str(member.pk)


def test_before_a_reset_click_here_refuses_a_registered_user(member):
    response = section1_login(Client(), "dduck2021", PASSWORD)
    assert response.status_code == 200  # "already registered": sign in with your button
    assert User.objects.get(pk=member.pk).mfa_method != User.MfaMethod.NONE


def test_reset_of_a_deactivated_user_is_refused(admin_client, member):
    User.objects.filter(pk=member.pk).update(is_active=False)
    before = snapshot(member)
    response = post_action(admin_client, member.pk, "reset-registration")
    assert response.status_code == 302
    assert snapshot(member) == before
    assert not OutboxMessage.objects.filter(to=member.email).exists()
    assert AuditEvent.objects.filter(
        event="manage-users.reset-registration", outcome="refused"
    ).exists()


def test_an_admin_cannot_reset_or_deactivate_themselves(admin_client, admin):
    before = snapshot(admin)
    for action in ["reset-registration", "deactivate"]:
        page = admin_client.get(action_url(admin.pk, action)).content.decode()
        assert "your own account" in page
        assert f'<form method="post" action="{action_url(admin.pk, action)}"' not in page
        response = post_action(admin_client, admin.pk, action)
        assert response.status_code == 302
    assert snapshot(admin) == before
    assert is_signed_in(admin_client)


@pytest.mark.parametrize("form_user", ["", "abc", "-1", "0", "1.5", "99999999999999999999999"])
def test_bad_user_ids_in_the_confirmation_form_are_404(admin_client, member, form_user):
    before = snapshot(member)
    response = post_action(admin_client, member.pk, "reset-registration", form_user=form_user)
    assert response.status_code == 404
    assert snapshot(member) == before


def test_a_form_naming_another_user_of_the_organization_is_404(admin_client, member, email_user):
    before = (snapshot(member), snapshot(email_user))
    response = post_action(admin_client, member.pk, "deactivate", form_user=email_user.pk)
    assert response.status_code == 404
    assert (snapshot(member), snapshot(email_user)) == before
    assert AuditEvent.objects.filter(outcome="form-mismatch").exists()


# --- deactivate, reactivate, the administrator role ---------------------------------------


def test_deactivation_ends_sessions_and_remembered_browsers_and_blocks_sign_in(
    admin_client, member
):
    User.objects.filter(pk=member.pk).update(mfa_method="email", phone_number="")
    member_browser = sign_in(Client(), member, remember=True)
    response = post_action(admin_client, member.pk, "deactivate")
    assert response.status_code == 302
    member.refresh_from_db()
    assert not member.is_active
    assert not SignedInSession.objects.filter(user=member).exists()
    assert not RememberedBrowser.objects.filter(user=member).exists()
    member_browser.get("/home/")
    assert not is_signed_in(member_browser)
    assert not password_accepted(member)
    assert AuditEvent.objects.get(event="manage-users.deactivate").detail["admin_username"]

    page = admin_client.get(detail_url(member)).content.decode()
    assert "Deactivated" in page and "REACTIVATE USER" in page
    assert "RESET REGISTRATION" not in page
    assert post_action(admin_client, member.pk, "reactivate").status_code == 302
    member.refresh_from_db()
    assert member.is_active
    assert password_accepted(member)
    assert AuditEvent.objects.filter(event="manage-users.reactivate", outcome="success").exists()


def test_deactivating_twice_or_reactivating_an_active_user_is_refused(admin_client, member):
    assert post_action(admin_client, member.pk, "reactivate").status_code == 302
    assert User.objects.get(pk=member.pk).is_active
    post_action(admin_client, member.pk, "deactivate")
    before = snapshot(member)
    post_action(admin_client, member.pk, "deactivate")
    assert snapshot(member) == before
    assert AuditEvent.objects.filter(event="manage-users.deactivate", outcome="refused").exists()


def test_granting_the_role_opens_manage_users_and_removing_it_closes_it(admin_client, member):
    member_browser = Client()
    User.objects.filter(pk=member.pk).update(mfa_method="email", phone_number="")
    sign_in(member_browser, member)
    assert member_browser.get(LIST).status_code == 403
    post_action(admin_client, member.pk, "make-admin")
    assert User.objects.get(pk=member.pk).is_org_admin
    assert member_browser.get(LIST).status_code == 200
    post_action(admin_client, member.pk, "remove-admin")
    assert not User.objects.get(pk=member.pk).is_org_admin
    assert member_browser.get(LIST).status_code == 403
    outcomes = AuditEvent.objects.filter(
        event__in=["manage-users.make-admin", "manage-users.remove-admin"]
    )
    assert sorted(outcomes.values_list("event", flat=True)) == [
        "manage-users.make-admin",
        "manage-users.remove-admin",
    ]


def notices_to(user: User) -> list[tuple[str, str]]:
    """(subject, body) of every security notice emailed to ``user`` (the dev outbox)."""
    return [
        (m.subject, m.body)
        for m in OutboxMessage.objects.filter(to=user.email).order_by("id")
        if "call the help desk" in m.body  # every notice ends so; sign-in codes do not
    ]


@pytest.mark.parametrize(
    ("actions", "subject", "words"),
    [
        (["deactivate"], "Your account was deactivated", "deactivated your"),
        (["deactivate", "reactivate"], "Your account was reactivated", "sign in again"),
        (["make-admin"], "You are now a provider administrator", "Manage Users"),
        (["make-admin", "remove-admin"], "Your provider administrator role was removed", ""),
    ],
)
def test_each_change_is_told_to_the_user_by_email_and_message(
    admin_client, member, actions, subject, words
):
    for action in actions:
        assert post_action(admin_client, member.pk, action).status_code == 302
    sent = notices_to(member)
    assert len(sent) == len(actions)  # one notice per change
    mail_subject, body = sent[-1]
    assert mail_subject.endswith(f": {subject}")
    assert "Your provider administrator Daisy Admin" in body and words in body
    # Someone else made the change: not "if you did not make this change".
    assert body.endswith(
        "If you did not expect this change, call the help desk at 1-800-555-0100."
    )
    message = Message.objects.filter(recipient=member).latest("id")
    assert message.subject == subject and message.body == body


def test_a_refused_change_tells_nobody(admin_client, admin, member):
    post_action(admin_client, member.pk, "reactivate")  # already active: refused
    post_action(admin_client, admin.pk, "remove-admin")  # the last administrator: refused
    post_action(admin_client, member.pk, "remove-admin")  # not an administrator: refused
    assert notices_to(member) == [] and notices_to(admin) == []
    assert not Message.objects.exists()


def test_the_admin_is_told_when_the_notice_could_not_be_sent(admin_client, member):
    with mock.patch.object(manage_users, "notify", return_value=False):
        post_action(admin_client, member.pk, "deactivate")
    page = admin_client.get(detail_url(member)).content.decode()
    assert "Daisey Duck (dduck2021) was deactivated." in page
    assert "The email telling Daisey Duck (dduck2021) about it could not be sent." in page
    assert not User.objects.get(pk=member.pk).is_active  # the change stands


def test_a_deactivated_user_cannot_be_made_an_administrator(admin_client, member):
    User.objects.filter(pk=member.pk).update(is_active=False)
    post_action(admin_client, member.pk, "make-admin")
    assert not User.objects.get(pk=member.pk).is_org_admin


def test_the_last_administrator_cannot_remove_their_own_role(admin_client, admin):
    page = admin_client.get(action_url(admin.pk, "remove-admin")).content.decode()
    assert "is the last provider administrator" in page
    response = post_action(admin_client, admin.pk, "remove-admin")
    assert response.status_code == 302 and response.url == detail_url(admin)
    assert User.objects.get(pk=admin.pk).is_org_admin
    assert AuditEvent.objects.filter(event="manage-users.remove-admin", outcome="refused").exists()


def test_an_inactive_admin_does_not_count_as_the_remaining_administrator(
    admin_client, admin, make_user
):
    make_user(is_org_admin=True, is_active=False)
    post_action(admin_client, admin.pk, "remove-admin")
    assert User.objects.get(pk=admin.pk).is_org_admin


def test_an_admin_may_remove_their_own_role_while_another_admin_remains(
    admin_client, admin, make_user
):
    make_user(is_org_admin=True)
    response = post_action(admin_client, admin.pk, "remove-admin")
    assert response.status_code == 302 and response.url == "/home/"
    assert not User.objects.get(pk=admin.pk).is_org_admin
    assert admin_client.get(LIST).status_code == 403


def test_the_other_admin_can_be_deactivated_or_demoted_by_an_admin(admin_client, make_user):
    other = make_user(is_org_admin=True)
    post_action(admin_client, other.pk, "remove-admin")
    assert not User.objects.get(pk=other.pk).is_org_admin
    post_action(admin_client, other.pk, "make-admin")
    post_action(admin_client, other.pk, "deactivate")
    other.refresh_from_db()
    assert other.is_org_admin and not other.is_active


def test_leaves_no_admin_counts_only_active_admins_of_the_same_organization(
    admin, make_user, make_org
):
    make_user(is_org_admin=True, organization=make_org(name="Other Clinic"))
    assert manage_users._leaves_no_admin(admin)
    second = make_user(is_org_admin=True)
    assert not manage_users._leaves_no_admin(admin)
    User.objects.filter(pk=second.pk).update(is_active=False)
    assert manage_users._leaves_no_admin(admin)
    standard = make_user()
    assert not manage_users._leaves_no_admin(standard)  # not an admin: nothing to lose
