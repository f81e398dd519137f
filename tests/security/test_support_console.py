"""Attack: using the support console without the support role, or bending it.

The console reaches every user of every organization, so its guard is the role alone.
A standard user, a provider administrator, a staff member without the support role and a
customer account whose roles field was edited to say "support" call every address and
post every action; a support member whose role is removed (or who is deactivated) while
their confirmation page is open posts it anyway; the form's user id is edited; the reason
is left out; a staff account (one's own included) is the target; a page from another site
posts without the CSRF token; two support members change the same user at the same
instant.
"""

from __future__ import annotations

import contextlib
import re
import threading
from unittest import mock

import pytest
from django.db import connection
from django.test import Client

from caregate.accounts.models import User
from caregate.audit.log import verify_chain
from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.staff import support_console
from tests.conftest import sign_in_as
from tests.test_manage_users import sign_in
from tests.test_manage_users import snapshot as manage_users_snapshot
from tests.test_support_console import REASON, action_url, detail_url, post_action

pytestmark = pytest.mark.django_db
ACTIONS = list(support_console.ACTIONS)
DENIED = "This page is for the support team."


def snapshot(user: User) -> tuple:
    """Everything a support action could change about a user."""
    return (*manage_users_snapshot(user), user.staff_roles)


def _prepare(user: User, action: str) -> None:
    """Put ``user`` in the state where ``action`` applies, so only the guard stops it."""
    User.objects.filter(pk=user.pk).update(is_active=action != "reactivate")


def support_events(action: str, outcome: str = "success"):
    return AuditEvent.objects.filter(event=f"support.{action}", outcome=outcome)


@pytest.fixture
def victim(make_user, make_org) -> User:
    """A registered, signed-in user of some organization."""
    user = make_user(username="victim", mfa="email", organization=make_org(name="Far Clinic"))
    sign_in(Client(), user)
    return user


@pytest.fixture
def support(make_staff) -> User:
    return make_staff(roles=("support",))


@pytest.fixture
def support_client(support) -> Client:
    return sign_in_as(Client(), support)


def _outsiders(make_user, make_staff) -> dict[str, User]:
    impostor = make_user(username="impostor", staff_roles=["support"])  # no identity provider
    return {
        "standard user": make_user(username="standard"),
        "provider administrator": make_user(username="padmin", is_org_admin=True),
        "staff without the support role": make_staff(roles=("staff",)),
        "customer whose roles say support": impostor,
    }


@pytest.mark.parametrize(
    "who",
    [
        "standard user",
        "provider administrator",
        "staff without the support role",
        "customer whose roles say support",
    ],
)
def test_everyone_but_support_gets_403_everywhere_and_changes_nothing(
    who, make_user, make_staff, victim
):
    client = sign_in_as(Client(), _outsiders(make_user, make_staff)[who])
    missing = User.objects.order_by("-pk").first().pk + 1000
    urls = ["/support/", "/support/?q=victim", detail_url(victim), f"/support/users/{missing}/"]
    urls += [action_url(victim.pk, action) for action in [*ACTIONS, "delete"]]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 403, (who, url)
        assert DENIED in response.content.decode()
        assert "victim" not in response.content.decode()
    for action in ACTIONS:
        _prepare(victim, action)
        before = snapshot(victim)
        assert post_action(client, victim.pk, action).status_code == 403
        assert snapshot(victim) == before
    assert not AuditEvent.objects.filter(event__startswith="support.").exists()
    assert not OutboxMessage.objects.filter(to=victim.email, subject__icontains="reset").exists()


def test_signed_out_visitors_are_sent_to_the_login_page(client, victim):
    for url in ["/support/", detail_url(victim), action_url(victim.pk, "deactivate")]:
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/?next="), url
    before = snapshot(victim)
    assert post_action(client, victim.pk, "deactivate").status_code == 302
    assert snapshot(victim) == before


@pytest.mark.parametrize("action", ACTIONS)
def test_a_support_member_whose_role_was_removed_is_refused_at_post(
    support_client, support, victim, action
):
    _prepare(victim, action)
    assert support_client.get(action_url(victim.pk, action)).status_code == 200
    User.objects.filter(pk=support.pk).update(staff_roles=["staff"])
    before = snapshot(victim)
    response = post_action(support_client, victim.pk, action)
    assert response.status_code == 403 and DENIED in response.content.decode()
    assert snapshot(victim) == before


def test_a_deactivated_support_member_is_signed_out_and_changes_nothing(
    support_client, support, victim
):
    User.objects.filter(pk=support.pk).update(is_active=False)
    before = snapshot(victim)
    response = post_action(support_client, victim.pk, "reset-registration")
    assert response.status_code == 302 and response.url.startswith("/?next=")
    assert snapshot(victim) == before


@pytest.mark.parametrize(
    "change", [{"staff_roles": ["staff"]}, {"is_active": False}, {"oidc_subject": ""}]
)
def test_the_staff_member_is_read_again_inside_the_change(support_client, support, victim, change):
    """The role goes between the decorator's check and the transaction: still refused."""
    real = support_console.ReasonForm.is_valid

    def lose_the_role_meanwhile(form: support_console.ReasonForm) -> bool:
        User.objects.filter(pk=support.pk).update(**change)
        return real(form)

    before = snapshot(victim)
    with mock.patch.object(support_console.ReasonForm, "is_valid", lose_the_role_meanwhile):
        response = post_action(support_client, victim.pk, "reset-registration")
    assert response.status_code == 403
    assert snapshot(victim) == before
    assert support_events("reset-registration", "not-support").count() == 1
    assert not support_events("reset-registration").exists()


@pytest.mark.parametrize("action", ACTIONS)
def test_a_form_naming_another_user_than_the_address_is_404(
    support_client, victim, make_user, action
):
    bystander = make_user(username="bystander")
    _prepare(victim, action)
    _prepare(bystander, action)
    before = (snapshot(victim), snapshot(bystander))
    response = post_action(support_client, bystander.pk, action, form_user=victim.pk)
    assert response.status_code == 404
    assert (snapshot(victim), snapshot(bystander)) == before
    mismatch = support_events(action, "form-mismatch").get()
    assert mismatch.detail["target_user_id"] == bystander.pk


@pytest.mark.parametrize("form_user", ["", "abc", "-1", "0", "1.5", "99999999999999999999999"])
def test_bad_user_ids_in_the_form_are_404(support_client, victim, form_user):
    before = snapshot(victim)
    response = post_action(support_client, victim.pk, "deactivate", form_user=form_user)
    assert response.status_code == 404
    assert snapshot(victim) == before


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("", "Please give the reason for this change."),
        ("   \n\t  ", "Please give the reason for this change."),
        ("too short", "A reason is at least 10 characters."),
        ("  short   ", "A reason is at least 10 characters."),  # measured once trimmed
        ("x" * 501, "A reason is at most 500 characters."),
        ("a reason\x00with a null", "Null characters are not allowed."),
        # Found by the attacker review: invisible characters are not a reason.
        ("\u200b" * 12, "A reason is at least 10 characters."),
        ("ab\u200b\u200e\u2060" * 4, "A reason is at least 10 characters."),
    ],
)
@pytest.mark.parametrize("action", ACTIONS)
def test_without_a_proper_reason_nothing_changes(support_client, victim, action, reason, message):
    _prepare(victim, action)
    before = snapshot(victim)
    response = post_action(support_client, victim.pk, action, reason=reason)
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page and 'name="reason"' in page
    assert snapshot(victim) == before
    assert not AuditEvent.objects.filter(event=f"support.{action}").exists()


def test_a_post_without_a_reason_field_at_all_changes_nothing(support_client, victim):
    before = snapshot(victim)
    response = support_client.post(action_url(victim.pk, "deactivate"), {"user": victim.pk})
    assert response.status_code == 200
    assert snapshot(victim) == before


@pytest.mark.parametrize("action", ACTIONS)
def test_staff_accounts_cannot_be_changed_not_even_ones_own(
    support_client, support, make_staff, action
):
    targets = [make_staff(roles=("support",))]
    if action != "reactivate":  # a deactivated member is not signed in to reactivate themselves
        targets.append(support)
    for target in targets:
        _prepare(target, action)
        before = snapshot(target)
        page = support_client.get(action_url(target.pk, action)).content.decode()
        assert "Staff accounts come from the identity provider" in page
        assert 'name="reason"' not in page
        response = post_action(support_client, target.pk, action)
        assert response.status_code == 302 and response.url == detail_url(target)
        assert snapshot(target) == before
    assert support_events(action, "refused").count() == len(targets)
    assert not support_events(action).exists()


@pytest.mark.parametrize("suffix", ["", "reset-registration/", "deactivate/", "reactivate/"])
def test_an_unknown_user_id_is_404(support_client, suffix):
    missing = User.objects.order_by("-pk").first().pk + 1000
    assert support_client.get(f"/support/users/{missing}/{suffix}").status_code == 404
    if suffix:
        assert post_action(support_client, missing, suffix.rstrip("/")).status_code == 404
        assert support_events(suffix.rstrip("/"), "not-found").count() == 2


def test_an_unknown_action_is_404(support_client, victim):
    before = snapshot(victim)
    assert support_client.get(action_url(victim.pk, "make-admin")).status_code == 404
    assert post_action(support_client, victim.pk, "make-admin").status_code == 404
    assert snapshot(victim) == before


def test_get_never_changes_anything(support_client, victim):
    """A cross-site link or image (a GET) to any console address changes nobody."""
    User.objects.filter(pk=victim.pk).update(is_active=True)
    before = snapshot(victim)
    urls = ["/support/?q=victim", detail_url(victim)]
    urls += [action_url(victim.pk, action) for action in ACTIONS]
    urls += [
        f"{action_url(victim.pk, action)}?user={victim.pk}&reason={REASON}" for action in ACTIONS
    ]
    for url in urls:
        assert support_client.get(url).status_code == 200, url
    assert snapshot(victim) == before
    for action in ACTIONS:
        assert not AuditEvent.objects.filter(event=f"support.{action}").exists()
    assert not OutboxMessage.objects.filter(to=victim.email, subject__icontains="reset").exists()


@pytest.mark.parametrize("action", ACTIONS)
def test_a_post_without_the_csrf_token_is_refused(support, victim, action):
    browser = Client(enforce_csrf_checks=True)
    browser.cookies = sign_in_as(Client(), support).cookies  # the same session
    _prepare(victim, action)
    before = snapshot(victim)
    assert post_action(browser, victim.pk, action).status_code == 403
    assert snapshot(victim) == before
    # With the token the page carries, the same POST goes through: only the token was missing.
    page = browser.get(action_url(victim.pk, action)).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = browser.post(
        action_url(victim.pk, action),
        {"user": victim.pk, "reason": REASON, "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    assert snapshot(victim) != before


# --- two support members at the same instant ----------------------------------------------


def _race(posts: list[tuple[Client, int, str]]) -> list[int]:
    """Send the POSTs at once; each waits inside its refusal check for the other, so that
    without the row lock both would pass the check on the same state."""
    barrier = threading.Barrier(len(posts), timeout=3)
    real = support_console.SupportAction.refusal

    def slow_refusal(self: support_console.SupportAction, target: User) -> str:
        answer = real(self, target)
        # Broken: the other request is waiting for the lock, as it should.
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        return answer

    statuses: list[int] = []
    errors: list[BaseException] = []

    def run(client: Client, user_id: int, action: str) -> None:
        try:
            statuses.append(post_action(client, user_id, action).status_code)
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=args) for args in posts]
    with mock.patch.object(support_console.SupportAction, "refusal", slow_refusal):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert not errors, errors
    return statuses


def _two_support_clients(make_staff) -> list[Client]:
    return [sign_in_as(Client(), make_staff(roles=("support",))) for _ in range(2)]


@pytest.mark.django_db(transaction=True)
def test_two_resets_of_one_user_at_once_both_land_harmlessly(make_staff, make_user):
    target = make_user(username="raced", mfa="phone")
    first, second = _two_support_clients(make_staff)
    statuses = _race(
        [(first, target.pk, "reset-registration"), (second, target.pk, "reset-registration")]
    )
    assert statuses == [302, 302]
    target.refresh_from_db()
    assert target.mfa_method == User.MfaMethod.NONE and target.phone_number == ""
    events = AuditEvent.objects.filter(event="support.reset-registration")
    assert list(events.values_list("outcome", flat=True)) == ["success", "success"]
    assert len(set(events.values_list("detail__staff_id", flat=True))) == 2
    links = OutboxMessage.objects.filter(to=target.email, subject__icontains="complete")
    assert links.count() == 2  # one per reset; the later link is the one that works
    assert verify_chain()[1] is None


@pytest.mark.django_db(transaction=True)
def test_two_deactivations_of_one_user_at_once_make_one_change(make_staff, make_user):
    target = make_user(username="raced")
    first, second = _two_support_clients(make_staff)
    statuses = _race([(first, target.pk, "deactivate"), (second, target.pk, "deactivate")])
    assert statuses == [302, 302]
    assert not User.objects.get(pk=target.pk).is_active
    outcomes = AuditEvent.objects.filter(event="support.deactivate").values_list(
        "outcome", flat=True
    )
    assert sorted(outcomes) == ["refused", "success"]
    assert verify_chain()[1] is None
