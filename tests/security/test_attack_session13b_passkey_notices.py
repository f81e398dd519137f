"""Attack session 13b: the two changes at the tip of main, seen by an attacker.

1. ``ceremony.issue_challenge`` now deletes the earlier unused challenges of the same
   ceremony binding (purpose, user_id, flow_instance).
2. Manage Users and the support console send the affected user a security notice (email
   and Message Center) after a deactivation, reactivation or administrator-role change.

Findings were failing tests (marked FINDING); both are fixed: a new challenge now replaces
only the one its own page held (``issue_challenge(replaces=...)``, used or not). The rest
are attacks that held.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from unittest import mock

import pytest
from django.db import connection, connections
from django.test import Client

from caregate.accounts.models import User
from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.flows.registry import FLOWS
from caregate.passkeys import ceremony
from caregate.passkeys.models import PasskeyChallenge
from caregate.portal import queries
from caregate.portal.models import Message
from tests import passkey_steps as steps
from tests.passkey_steps import ADD, LOGIN_STAGE, SECOND_FACTOR_STAGE
from tests.test_manage_users import admin, admin_client, named, post_action, sign_in
from tests.test_support_console import post_action as support_post
from tests.webauthn_soft import SoftAuthenticator

__all__ = ["admin", "admin_client"]  # Manage Users' fixtures, as its tests use them

Purpose = PasskeyChallenge.Purpose


@pytest.fixture
def second_factor_flow() -> Iterator[None]:
    with mock.patch.dict(FLOWS, {steps.SECOND_FACTOR_FLOW.name: steps.SECOND_FACTOR_FLOW}):
        yield


@pytest.fixture
def member(make_user) -> User:
    return named(make_user(username="dduck2021", email="daisey@clinic.example"), "Daisey", "Duck")


@pytest.fixture
def me(email_user) -> Client:
    return steps.signed_in(Client(), email_user)


def notices_to(user: User) -> list[OutboxMessage]:
    return [
        m
        for m in OutboxMessage.objects.filter(to__icontains=user.email).order_by("id")
        if "call the help desk" in m.body
    ]


# --- 1. challenge replacement ----------------------------------------------------------


@pytest.mark.django_db
def test_finding_a_second_session_of_the_user_voids_the_first_sessions_enrolment(email_user):
    """FINDING (low, availability; fixed): the Add a passkey binding is (register, user, "") for
    every session of the user, but each session keeps its own pointer. Adding a passkey on
    the laptop while the phone's Add page is also open (or opened meanwhile) deletes the
    laptop's challenge: the laptop's ceremony is refused ("no-challenge"). Before the
    change each session's challenge stood on its own. The commit's premise, "only the
    newest can be used, since its page's flow state or session points at that one alone",
    does not hold for a binding shared by sessions."""
    laptop = steps.signed_in(Client(), email_user)
    phone = steps.signed_in(Client(), email_user)
    steps.verify_for_passkey(laptop)
    shown = steps.options(laptop.get(ADD))
    steps.verify_for_passkey(phone)
    assert phone.get(ADD).status_code == 200  # the other device's Add page
    credential = SoftAuthenticator().create(shown)
    response = laptop.post(ADD, {"name": "Laptop", "credential": credential})
    refused = AuditEvent.objects.filter(event="passkey.enrol", outcome="refused")
    assert list(refused.values_list("detail__reason", flat=True)) == []
    assert response.status_code == 302, steps.page_text(response)[:400]


@pytest.mark.django_db
def test_finding_refused_verifies_still_leave_one_row_per_request(settings):
    """FINDING (low/informational, growth; fixed): the commit and README say a ceremony keeps
    one row "however often the page is shown". A refused POST (any junk credential) uses
    its challenge up and shows the page again with a new one; the used one is never
    replaced, so an anonymous LOGIN WITH PASSKEY attempt leaves one row per POST (until
    the 5-minute expiry). Deleting used rows of the binding too would be safe: a replay
    then finds no row and is still refused."""
    settings.CAREGATE_PASSKEY_LOGIN = True
    browser = Client()
    steps.passkey_login(browser)
    for _ in range(25):
        response = steps.post_assertion(browser, LOGIN_STAGE, '{"id": "x"}')
        assert response.status_code == 200
    assert PasskeyChallenge.objects.filter(purpose=Purpose.LOGIN).count() <= 2


@pytest.mark.django_db
def test_held_a_strangers_login_renders_leave_my_login_challenge(settings, me):
    """The LOGIN binding is user NULL + the flow instance (random per attempt): another
    anonymous attempt, shown again and again, restarted, never touches mine."""
    settings.CAREGATE_PASSKEY_LOGIN = True
    device = steps.enrol(me)
    victim, stranger = Client(), Client()
    shown = steps.passkey_login(victim)
    for _ in range(10):
        steps.passkey_login(stranger)  # a fresh instance each time
        stranger.get(LOGIN_STAGE)
        steps.post_assertion(stranger, LOGIN_STAGE, "junk")
    response = steps.post_assertion(victim, LOGIN_STAGE, device.get(shown))
    assert response.status_code == 302 and response.url == "/home/"


@pytest.mark.django_db
def test_held_someone_with_my_password_cannot_void_my_second_factor_challenge(
    second_factor_flow, me, email_user
):
    """Same user, same purpose: an attacker who knows the password runs their own
    password + passkey attempt for my account; their flow instance differs, so my
    attempt's challenge survives their renders."""
    device = steps.enrol(me)
    victim, attacker = Client(), Client()
    shown = steps.start_second_factor(victim, email_user)
    steps.start_second_factor(attacker, email_user)
    for _ in range(5):
        attacker.get(SECOND_FACTOR_STAGE)
    response = steps.post_assertion(victim, SECOND_FACTOR_STAGE, device.get(shown))
    assert response.status_code == 302 and response.url == "/home/"


@pytest.mark.django_db
def test_held_another_users_add_page_leaves_my_enrolment(me, make_user):
    stranger = steps.signed_in(Client(), make_user(username="x.other", email="x@o.example"))
    steps.verify_for_passkey(me)
    shown = steps.options(me.get(ADD))
    steps.verify_for_passkey(stranger)
    for _ in range(5):
        stranger.get(ADD)
    credential = SoftAuthenticator().create(shown)
    assert me.post(ADD, {"name": "Laptop", "credential": credential}).status_code == 302


@pytest.mark.django_db
def test_held_a_new_challenge_never_deletes_a_used_one(email_user):
    """Replay protection: the replacement keeps used rows, so a used challenge is still
    refused as used after any number of new ones of the same binding."""
    first = ceremony.issue_challenge(Purpose.LOGIN, flow_instance="inst-1")
    ceremony.consume_challenge(first.pk, Purpose.LOGIN, flow_instance="inst-1")
    for _ in range(3):
        ceremony.issue_challenge(Purpose.LOGIN, flow_instance="inst-1")
    assert PasskeyChallenge.objects.filter(pk=first.pk, used_at__isnull=False).exists()
    with pytest.raises(ceremony.Refused) as refused:
        ceremony.consume_challenge(first.pk, Purpose.LOGIN, flow_instance="inst-1")
    assert refused.value.reason == "used-challenge"
    # A NULL user binding is IS NULL, not "= NULL": only this instance's unused rows go.
    other = ceremony.issue_challenge(Purpose.LOGIN, flow_instance="inst-2")
    mine = ceremony.issue_challenge(Purpose.REGISTER, user_id=email_user.pk)
    ceremony.issue_challenge(Purpose.LOGIN, flow_instance="inst-1")
    assert PasskeyChallenge.objects.filter(pk__in=[other.pk, mine.pk]).count() == 2


@pytest.mark.django_db
def test_held_a_replayed_assertion_after_a_new_render_is_refused(settings, me):
    settings.CAREGATE_PASSKEY_LOGIN = True
    device = steps.enrol(me)
    browser = Client()
    assertion = device.get(steps.passkey_login(browser))
    assert steps.post_assertion(browser, LOGIN_STAGE, assertion).status_code == 302
    thief = Client()
    steps.passkey_login(thief)
    response = steps.post_assertion(thief, LOGIN_STAGE, assertion)
    assert response.status_code == 200 and "_auth_user_id" not in thief.session


@pytest.mark.django_db(transaction=True)
def test_held_racing_consumes_and_new_renders_use_a_challenge_at_most_once():
    """Two finishes and a render at once (PostgreSQL: real concurrency): the DELETE of
    unused rows and the compare-and-set UPDATE never let a challenge count twice."""
    if connection.vendor != "postgresql":
        pytest.skip("needs concurrent writers (PostgreSQL)")
    for round_ in range(15):
        outcomes = _race_round(f"race-{round_}")
        assert outcomes.count("used") <= 1, outcomes
        assert len(outcomes) == 2


def _race_round(instance: str) -> list[str]:
    """Two consumes of one challenge and a new render of its binding, at once."""
    issued = ceremony.issue_challenge(Purpose.LOGIN, flow_instance=instance)
    barrier = threading.Barrier(3)
    outcomes: list[str] = []

    def finish() -> None:
        barrier.wait()
        try:
            ceremony.consume_challenge(issued.pk, Purpose.LOGIN, flow_instance=instance)
            outcomes.append("used")
        except ceremony.Refused as refusal:
            outcomes.append(refusal.reason)
        finally:
            connections.close_all()

    def render() -> None:
        barrier.wait()
        try:
            ceremony.issue_challenge(Purpose.LOGIN, flow_instance=instance)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=t) for t in (finish, finish, render)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


# --- 2. security notices ---------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["deactivate", "reactivate", "make-admin", "remove-admin"])
def test_held_another_organizations_user_gets_no_notice(admin_client, make_user, make_org, action):
    stranger = make_user(username="b.user", email="b@b.example", organization=make_org())
    if action == "reactivate":
        User.objects.filter(pk=stranger.pk).update(is_active=False)
    if action == "remove-admin":
        User.objects.filter(pk=stranger.pk).update(is_org_admin=True)
    assert post_action(admin_client, stranger.pk, action).status_code == 404
    assert notices_to(stranger) == []
    assert not Message.objects.filter(recipient=stranger).exists()


@pytest.mark.django_db
def test_held_a_form_naming_another_user_than_the_url_tells_nobody(
    admin_client, member, make_user, make_org
):
    stranger = make_user(username="b.user", email="b@b.example", organization=make_org())
    for url_user, form_user in [(member.pk, stranger.pk), (stranger.pk, member.pk)]:
        response = post_action(admin_client, url_user, "deactivate", form_user=form_user)
        assert response.status_code == 404
    assert notices_to(member) == [] and notices_to(stranger) == []
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_held_a_rolled_back_change_sends_no_notice(admin_client, member):
    """The audit append fails inside the transaction: the change rolls back, and the
    notice (built inside, sent only after the block) never goes."""
    admin_client.raise_request_exception = False
    with mock.patch("caregate.portal.manage_users.record", side_effect=RuntimeError("db")):
        response = post_action(admin_client, member.pk, "deactivate")
    assert response.status_code == 500
    assert User.objects.get(pk=member.pk).is_active
    assert notices_to(member) == [] and not Message.objects.exists()


@pytest.mark.django_db
def test_held_a_repeated_change_tells_once(admin_client, member):
    for _ in range(3):
        post_action(admin_client, member.pk, "deactivate")
    assert len(notices_to(member)) == 1
    assert Message.objects.filter(recipient=member).count() == 1


@pytest.mark.django_db
def test_held_a_hostile_admin_name_cannot_reach_headers_or_markup(
    client, admin, member, make_user
):
    """An administrator's name with CR/LF and markup: the subject is fixed text (no name
    in it), the email goes to the target alone, and the Message Center escapes it."""
    named(admin, "Eve\r\nBcc: spy@evil.example\r\n", "<script>alert(1)</script>")
    viewer = make_user(username="viewer", email="viewer@clinic.example")
    sign_in(client, admin)
    assert post_action(client, viewer.pk, "make-admin").status_code == 302
    [mail] = notices_to(viewer)
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert mail.subject.endswith(": You are now a provider administrator")
    assert mail.to == viewer.email
    assert not OutboxMessage.objects.filter(to__icontains="evil.example").exists()
    page = sign_in(Client(), viewer).get("/messages/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" not in page


@pytest.mark.django_db
def test_held_the_notice_is_the_targets_alone(admin_client, member, make_user):
    """The Message Center message names its recipient (not an organization-wide message
    every colleague would read), and the email goes to the target's address only."""
    colleague = make_user(username="colleague", email="colleague@clinic.example")
    post_action(admin_client, member.pk, "make-admin")
    message = Message.objects.get(subject="You are now a provider administrator")
    assert message.recipient_id == member.pk
    assert not queries.messages_for(colleague).filter(pk=message.pk).exists()
    assert notices_to(colleague) == []


@pytest.mark.django_db
def test_held_the_support_reason_stays_out_of_the_notice(client, make_staff, member):
    """The support console's reason (internal: "caller failed verification", ...) is in
    the audit event only, never in what the user is sent; a refused change tells nobody."""
    from tests.conftest import sign_in_as

    staff = make_staff(roles=("staff", "support"))
    sign_in_as(client, staff)
    reason = "Internal note: suspected account takeover, ticket 4711"
    assert support_post(client, member.pk, "deactivate", reason=reason).status_code == 302
    support_post(client, member.pk, "deactivate", reason=reason)  # already: refused
    sent = notices_to(member)
    assert len(sent) == 1 and "4711" not in sent[0].body and "takeover" not in sent[0].body
    message = Message.objects.get(recipient=member)
    assert "4711" not in message.body
    support_post(client, staff.pk, "deactivate", reason=reason)  # a staff account: refused
    assert notices_to(staff) == []
