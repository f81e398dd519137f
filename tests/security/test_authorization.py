"""Attack: reaching users one may not manage (Setup → Manage Users).

An administrator edits a user id in the address or in the confirmation form to reach
another organization's user; a standard user calls the pages directly; a page from another
site posts without the CSRF token; two administrators act at the same instant so that both
pass the last-administrator check and the organization is left with none.
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
from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.portal import manage_users
from tests.test_manage_users import action_url, detail_url, named, post_action, sign_in, snapshot

pytestmark = pytest.mark.django_db
ACTIONS = list(manage_users.ACTIONS)


@pytest.fixture
def admin(make_user) -> User:
    return named(make_user(username="admin.here", is_org_admin=True), "Here", "Admin")


@pytest.fixture
def admin_client(client: Client, admin: User) -> Client:
    return sign_in(client, admin)


@pytest.fixture
def victim(make_user, make_org) -> User:
    """An administrator of another organization: the most valuable target."""
    other = make_org(name="Other Clinic")
    return named(
        make_user(username="victim.there", is_org_admin=True, organization=other), "Vic", "Tim"
    )


@pytest.fixture
def own_user(make_user) -> User:
    return make_user(username="own.user")


def _prepare(user: User, action: str) -> None:
    """Put ``user`` in the state where ``action`` would apply (so only the guard stops it)."""
    if action == "reactivate":
        User.objects.filter(pk=user.pk).update(is_active=False)
    if action == "make-admin":
        User.objects.filter(pk=user.pk).update(is_org_admin=False)
    if action == "remove-admin":
        User.objects.filter(pk=user.pk).update(is_org_admin=True)


@pytest.mark.parametrize("action", ACTIONS)
def test_another_organizations_user_id_in_the_address_is_404(admin_client, victim, action):
    _prepare(victim, action)
    before = snapshot(victim)
    assert admin_client.get(detail_url(victim)).status_code == 404
    assert admin_client.get(action_url(victim.pk, action)).status_code == 404
    response = post_action(admin_client, victim.pk, action)
    assert response.status_code == 404
    assert snapshot(victim) == before
    assert not OutboxMessage.objects.filter(to=victim.email).exists()
    refused = AuditEvent.objects.filter(event=f"manage-users.{action}", outcome="not-found")
    assert refused.filter(detail__target_user_id=victim.pk).exists()


@pytest.mark.parametrize("action", ACTIONS)
def test_another_organizations_user_id_in_the_form_is_404(admin_client, victim, own_user, action):
    _prepare(victim, action)
    _prepare(own_user, action)
    before = (snapshot(victim), snapshot(own_user))
    response = post_action(admin_client, own_user.pk, action, form_user=victim.pk)
    assert response.status_code == 404
    assert (snapshot(victim), snapshot(own_user)) == before


@pytest.mark.parametrize("action", ACTIONS)
def test_the_page_for_ones_own_user_posted_to_another_organizations_address_is_404(
    admin_client, victim, action
):
    """Both ids edited to the victim's: the address still only reaches one's own org."""
    _prepare(victim, action)
    before = snapshot(victim)
    response = post_action(admin_client, victim.pk, action, form_user=victim.pk)
    assert response.status_code == 404
    assert snapshot(victim) == before


def test_the_list_and_search_never_show_another_organizations_users(admin_client, victim):
    for query in ["", "vic", "tim", "victim", victim.email]:
        page = admin_client.get("/setup/users/", {"q": query}).content.decode()
        assert f"({victim.username})" not in page, query
        assert f"<dd>{victim.email}</dd>" not in page, query
        if query:
            assert "Manage Users (0)" in page, query


@pytest.mark.parametrize("action", ACTIONS)
def test_a_standard_user_cannot_reach_any_action(client, make_user, own_user, action):
    standard = make_user(username="standard.user")
    sign_in(client, standard)
    _prepare(own_user, action)
    before = snapshot(own_user)
    assert client.get(action_url(own_user.pk, action)).status_code == 403
    assert post_action(client, own_user.pk, action).status_code == 403
    assert post_action(client, standard.pk, "make-admin").status_code == 403  # self-promotion
    assert snapshot(own_user) == before
    assert not User.objects.get(pk=standard.pk).is_org_admin


def test_a_standard_user_gets_the_same_answer_for_existing_and_missing_ids(
    client, make_user, own_user, victim
):
    sign_in(client, make_user())
    answers = {
        client.get(url).status_code
        for url in [detail_url(own_user), detail_url(victim), "/setup/users/987654321/"]
    }
    assert answers == {403}


@pytest.mark.parametrize("action", ACTIONS)
def test_a_post_without_the_csrf_token_is_refused(admin, own_user, action):
    """A page on another site posts to the change with the admin's cookie, no token."""
    signed_in = sign_in(Client(), admin)
    browser = Client(enforce_csrf_checks=True)
    browser.cookies = signed_in.cookies  # the same signed-in session, as a browser sends it
    _prepare(own_user, action)
    before = snapshot(own_user)
    response = post_action(browser, own_user.pk, action)
    assert response.status_code == 403
    assert snapshot(own_user) == before
    # With the token the page carries, the same POST goes through: only the token was missing.
    page = browser.get(action_url(own_user.pk, action)).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = browser.post(
        action_url(own_user.pk, action), {"user": own_user.pk, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert snapshot(own_user) != before


def test_the_last_administrator_cannot_be_removed(admin_client, admin):
    response = post_action(admin_client, admin.pk, "remove-admin")
    assert response.status_code == 302
    assert User.objects.get(pk=admin.pk).is_org_admin


def test_an_admin_demoted_meanwhile_cannot_finish_a_change_they_opened(
    admin_client, admin, own_user, make_user
):
    """The confirmation page was shown while an admin; the POST comes after demotion."""
    make_user(is_org_admin=True)
    assert admin_client.get(action_url(own_user.pk, "make-admin")).status_code == 200
    User.objects.filter(pk=admin.pk).update(is_org_admin=False)
    response = post_action(admin_client, own_user.pk, "make-admin")
    assert response.status_code == 403
    assert not User.objects.get(pk=own_user.pk).is_org_admin


# --- two administrators at the same instant ---------------------------------------------


def _race(clients_and_posts: list[tuple[Client, int, str]]) -> list[int]:
    """Send the POSTs at the same time; each thread waits inside the last-admin check
    for the others, so that without the organization lock both would pass it."""
    barrier = threading.Barrier(len(clients_and_posts), timeout=3)
    real = manage_users._leaves_no_admin

    def slow_check(target: User) -> bool:
        answer = real(target)
        # Broken: the other request is waiting for the lock, as it should.
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        return answer

    statuses: list[int] = []

    def run(client: Client, user_id: int, action: str) -> None:
        try:
            statuses.append(post_action(client, user_id, action).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=args) for args in clients_and_posts]
    with mock.patch.object(manage_users, "_leaves_no_admin", slow_check):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    return statuses


def _two_admins(make_user) -> tuple[User, Client, User, Client]:
    first = make_user(username="first.admin", is_org_admin=True)
    second = make_user(username="second.admin", is_org_admin=True)
    return first, sign_in(Client(), first), second, sign_in(Client(), second)


@pytest.mark.django_db(transaction=True)
def test_two_admins_removing_their_own_roles_at_once_leave_one(make_user):
    first, first_client, second, second_client = _two_admins(make_user)
    statuses = _race(
        [(first_client, first.pk, "remove-admin"), (second_client, second.pk, "remove-admin")]
    )
    assert statuses == [302, 302]
    org_admins = User.objects.filter(organization=first.organization, is_org_admin=True)
    assert org_admins.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one(make_user):
    first, first_client, second, second_client = _two_admins(make_user)
    statuses = _race(
        [(first_client, second.pk, "remove-admin"), (second_client, first.pk, "remove-admin")]
    )
    assert sorted(statuses) == [302, 302]  # one done, one refused (no longer an admin)
    org_admins = User.objects.filter(organization=first.organization, is_org_admin=True)
    assert org_admins.count() == 1
    assert AuditEvent.objects.filter(outcome="not-admin").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_admins_deactivating_each_other_at_once_leave_one_active(make_user):
    first, first_client, second, second_client = _two_admins(make_user)
    _race([(first_client, second.pk, "deactivate"), (second_client, first.pk, "deactivate")])
    active = User.objects.filter(
        organization=first.organization, is_org_admin=True, is_active=True
    )
    assert active.count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_admin_resetting_while_being_demoted_changes_nothing_after_the_demotion(
    make_user,
):
    """One admin removes the other's role while that one resets a user: either the reset
    happened before the demotion or it is refused, never a reset by a non-admin."""
    _, first_client, second, second_client = _two_admins(make_user)
    member = make_user(username="member.reset", mfa="email")
    _race(
        [
            (first_client, second.pk, "remove-admin"),
            (second_client, member.pk, "reset-registration"),
        ]
    )
    member.refresh_from_db()
    resets = AuditEvent.objects.filter(event="manage-users.reset-registration", outcome="success")
    demoted = AuditEvent.objects.get(event="manage-users.remove-admin", outcome="success")
    if member.mfa_method == User.MfaMethod.NONE:
        assert resets.get().pk < demoted.pk  # the reset came first, while still an admin
    else:
        assert not resets.exists()


@pytest.mark.parametrize("suffix", ["", "reset-registration/", "deactivate/"])
def test_another_organizations_id_and_a_missing_id_get_the_same_404(admin_client, victim, suffix):
    """Probing ids tells nothing about which exist in other organizations."""
    missing = User.objects.order_by("-pk").first().pk + 1000
    existing = admin_client.get(f"/setup/users/{victim.pk}/{suffix}")
    absent = admin_client.get(f"/setup/users/{missing}/{suffix}")
    assert existing.status_code == absent.status_code == 404
    assert existing.content == absent.content
