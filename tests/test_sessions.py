"""The signed-in session registry and security notices (shared by Forgot password,
Reset Registration and My Account)."""

from __future__ import annotations

import pytest
from django.test import Client

from caregate.accounts.models import SignedInSession
from caregate.delivery.models import OutboxMessage
from caregate.portal.models import Message
from caregate.portal.notices import notify
from caregate.security import sessions
from tests.phone_steps import email_login, is_signed_in

pytestmark = pytest.mark.django_db


def signed_in_client(user) -> Client:
    client = Client(HTTP_USER_AGENT="Front desk PC")
    assert email_login(client, user).url == "/home/"
    return client


def test_every_sign_in_is_registered_and_sign_out_forgets_it(email_user):
    first, second = signed_in_client(email_user), signed_in_client(email_user)
    alive = sessions.active_sessions(email_user)
    assert {s.session_key for s in alive} == {
        first.session.session_key,
        second.session.session_key,
    }
    assert {s.user_agent for s in alive} == {"Front desk PC"}
    first.post("/logout/")
    assert [s.session_key for s in sessions.active_sessions(email_user)] == [
        second.session.session_key
    ]


def test_end_sessions_signs_out_every_other_browser(email_user):
    first, second, third = (signed_in_client(email_user) for _ in range(3))
    assert sessions.end_sessions(email_user, keep=first.session.session_key) == 2
    assert is_signed_in(first)
    assert first.get("/home/").status_code == 200
    for other in (second, third):
        assert other.get("/home/").status_code == 302
    assert SignedInSession.objects.count() == 1


def test_end_session_refuses_another_users_session(email_user, make_user):
    victim = signed_in_client(make_user(mfa="email"))
    signed_in_client(email_user)
    victims_row = SignedInSession.objects.exclude(user=email_user).get()
    assert not sessions.end_session(email_user, victims_row.pk)  # an id edited in a form
    assert victim.get("/home/").status_code == 200
    assert sessions.end_session(victims_row.user, victims_row.pk)
    assert victim.get("/home/").status_code == 302


def test_a_session_ended_by_time_is_no_longer_listed(email_user):
    client = signed_in_client(email_user)
    client.session.delete()  # what the idle logoff's flush does to the store
    assert sessions.active_sessions(email_user) == []
    assert not SignedInSession.objects.exists()


def test_notice_goes_to_the_message_center_and_by_email(email_user):
    assert notify(email_user, "Your password was changed", "Your password was changed.")
    message = Message.objects.get(recipient=email_user)
    assert message.subject == "Your password was changed"
    assert "call the help desk" in message.body
    mail = OutboxMessage.objects.get(channel="email", to__icontains=email_user.email)
    assert "Your password was changed" in mail.subject
    assert "If you did not make this change" in mail.body


def test_notice_can_go_to_another_address_too(email_user):
    notify(email_user, "Email changed", "…", email_to=["old@clinic.example", email_user.email])
    mail = OutboxMessage.objects.get(channel="email")
    assert "old@clinic.example" in mail.to


@pytest.mark.django_db
def test_registering_one_session_twice_leaves_one_row(rf, make_user):
    """register() is one upsert: a second sign-in recorded under the same key (never two
    rows, never an error) keeps the newest user and method."""
    from importlib import import_module

    from django.conf import settings

    from caregate.accounts.models import SignedInSession
    from caregate.security import sessions

    first, second = make_user(), make_user()
    request = rf.get("/")
    request.session = import_module(settings.SESSION_ENGINE).SessionStore()
    sessions.register(request, first, "email")
    sessions.register(request, second, "phone")
    rows = list(SignedInSession.objects.filter(session_key=request.session.session_key))
    assert [(r.user_id, r.method) for r in rows] == [(second.pk, "phone")]
