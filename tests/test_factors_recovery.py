"""Recovery codes (issue #11): 10 single-use codes, offered once after a new factor, stored
hashed, a new set on demand (after the current factor again) voids the old one, and using
one signs in and tells the user by email and Message Center how many are left."""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client

from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.factors import recovery
from caregate.factors.models import AuthenticatorApp, RecoveryCode
from caregate.portal.models import Message
from tests.factor_steps import (
    CODES_CURRENT,
    NEW_CODES,
    OFFER,
    choose,
    codes_on,
    enrol_app,
    give_app,
    give_codes,
    page_text,
    prove_email,
    to_code_page,
    verify,
)
from tests.test_manage_users import admin, admin_client, member, post_action  # noqa: F401

pytestmark = pytest.mark.django_db


def test_codes_are_offered_once_after_the_app_is_set_up(signed_in, email_user, outbox_code):
    enrol_app(signed_in, email_user, outbox_code)
    page = signed_in.get(OFFER)
    assert page.status_code == 200 and "Save your recovery codes" in page_text(page)
    assert not RecoveryCode.objects.exists()  # showing the page makes nothing
    response = signed_in.post(OFFER)
    codes = codes_on(response)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert response["Cache-Control"] == "no-store"
    assert RecoveryCode.objects.filter(user=email_user, used_at=None).count() == 10
    # Stored hashed: no code appears in the table.
    stored = list(RecoveryCode.objects.values_list("code_hash", flat=True))
    assert not any(code in h or code.replace("-", "") in h for code in codes for h in stored)
    # Shown once: the offer is used up.
    again = signed_in.post(OFFER)
    assert again.status_code == 302 and again.url == "/setup/my-account/"
    assert RecoveryCode.objects.filter(user=email_user).count() == 10
    assert signed_in.get(OFFER).status_code == 302
    assert "10 of 10 left" in page_text(signed_in.get("/setup/my-account/"))
    mail = OutboxMessage.objects.get(subject__icontains="New recovery codes")
    assert not any(code in mail.body for code in codes)


def test_the_count_comes_from_the_setting(email_user, settings):
    settings.CAREGATE_RECOVERY_CODE_COUNT = 4
    assert len(give_codes(email_user)) == 4


def test_no_offer_without_a_new_factor(signed_in, email_user):
    response = signed_in.post(OFFER)
    assert response.status_code == 302 and response.url == "/setup/my-account/"
    assert not RecoveryCode.objects.exists()


def test_no_offer_for_a_user_who_has_codes(rf, email_user):
    give_codes(email_user)
    request = rf.get("/")
    request.session = {}
    assert recovery.offer_after_enrolment(request, email_user) is None
    RecoveryCode.objects.all().delete()
    assert recovery.offer_after_enrolment(request, email_user) == OFFER


def test_an_offer_is_for_its_own_user_only(signed_in, email_user, make_user):
    other = make_user()
    session = signed_in.session
    session[recovery.OFFER_KEY] = {"user": other.pk, "until": 2**40}
    session.save()
    response = signed_in.post(OFFER)
    assert response.status_code == 302
    assert not RecoveryCode.objects.exists()


def test_new_codes_need_the_current_factor_and_void_the_old(signed_in, email_user, outbox_code):
    old = give_codes(email_user)
    response = signed_in.post(NEW_CODES)
    assert response.status_code == 302 and response.url == CODES_CURRENT
    assert recovery.remaining(email_user) == 10  # nothing yet
    response = prove_email(signed_in, CODES_CURRENT, email_user.email, outbox_code)
    assert response.status_code == 200
    new = codes_on(response)
    assert len(new) == 10 and not set(new) & set(old)
    assert "The recovery codes you had before no longer work." in page_text(response)
    assert not recovery.use(email_user.pk, old[0])
    assert recovery.use(email_user.pk, new[0])
    event = AuditEvent.objects.get(event="factor.recovery-codes", outcome="replaced")
    assert event.user_id_snapshot == email_user.pk
    assert Message.objects.filter(recipient=email_user, subject="New recovery codes").exists()


def test_sign_in_with_a_code_tells_how_many_are_left(client, email_user):
    codes = give_codes(email_user)
    to_code_page(client, email_user)
    assert "Try another way" in page_text(client.get("/email-login/email-code/"))
    choose(client, "recovery-code")
    response = verify(client, codes[3].upper().replace("-", " "))  # case and spaces: fine
    assert response.status_code == 302 and response.url == "/home/"
    assert SESSION_KEY in client.session
    assert recovery.remaining(email_user) == 9
    notice = Message.objects.get(recipient=email_user, subject="A recovery code was used")
    assert "You have 9 recovery codes left." in notice.body
    mail = OutboxMessage.objects.get(subject__icontains="A recovery code was used")
    assert mail.to == email_user.email and codes[3] not in mail.body
    signin = AuditEvent.objects.filter(event="signin", outcome="success").latest("id")
    assert signin.detail["factor"] == "recovery-code"
    assert AuditEvent.objects.filter(
        event="factor.verify", outcome="ok", detail__channel="recovery-code"
    )


def test_each_code_works_once(client, email_user):
    codes = give_codes(email_user)
    assert recovery.use(email_user.pk, codes[0])
    to_code_page(client, email_user)
    choose(client, "recovery-code")
    response = verify(client, codes[0])
    assert "That recovery code is not correct, or it was already used." in page_text(response)
    assert SESSION_KEY not in client.session


def test_the_last_code_says_to_make_new_ones(client, email_user, settings):
    settings.CAREGATE_RECOVERY_CODE_COUNT = 1
    (code,) = give_codes(email_user)
    to_code_page(client, email_user)
    choose(client, "recovery-code")
    verify(client, code)
    notice = Message.objects.get(recipient=email_user, subject="A recovery code was used")
    assert "You have no recovery codes left" in notice.body
    # With none left, they are no longer offered.
    other = Client()
    to_code_page(other, email_user)
    assert "Try another way" not in page_text(other.get("/email-login/email-code/"))


def test_another_users_code_does_not_work(email_user, make_user):
    other = make_user()
    codes = give_codes(other)
    assert not recovery.use(email_user.pk, codes[0])
    assert recovery.remaining(other) == 10


def test_reset_registration_clears_the_app_and_the_codes(admin_client, member):  # noqa: F811
    give_app(member)
    give_codes(member)
    response = post_action(admin_client, member.pk, "reset-registration")
    assert response.status_code == 302
    assert not AuthenticatorApp.objects.filter(user=member).exists()
    assert not RecoveryCode.objects.filter(user=member).exists()


def test_a_reset_that_fails_keeps_the_factors(member, monkeypatch):  # noqa: F811
    from django.db import transaction

    from caregate.portal import manage_users

    give_app(member)
    monkeypatch.setattr(manage_users, "_void_access", lambda target: None)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        manage_users.reset_registration(member, "Test")
        raise Boom
    assert AuthenticatorApp.objects.filter(user=member).exists()
