"""Terms of Use: "I have read and agree to these terms of use." + CONTINUE before the portal.

Acceptance is recorded (user, version, time, client address); a new version is asked for
again; every portal page redirects to /terms/ until the version in force is accepted.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from caregate.accounts.models import TermsAcceptance, TermsVersion, User
from caregate.accounts.terms import accept, current_terms, needs_terms
from caregate.audit.models import AuditEvent
from tests.conftest import PASSWORD
from tests.registration_steps import enroll, open_link, register, registration_link

pytestmark = pytest.mark.django_db
PORTAL_PAGES = ["/home/", "/cases/", "/messages/", "/help/"]


def publish(version: str, *, ago: timedelta = timedelta(minutes=5)) -> TermsVersion:
    return TermsVersion.objects.create(
        version=version,
        text=f"KEPRO-STYLE PORTAL TERMS OF USE, version {version}.",
        published_at=timezone.now() - ago,
    )


def email_sign_in(client: Client, user: User, outbox_code) -> None:
    client.post("/login/start/", {"method": "email"})
    client.post("/email-login/credentials/", {"email": user.email, "password": PASSWORD})
    client.post("/email-login/email-code/", {"action": "send"})
    client.post("/email-login/email-code/", {"action": "verify", "code": outbox_code(user.email)})
    response = client.post("/email-login/email-code/", {"action": "continue"})
    assert response.status_code == 302 and response.url == "/home/"


@pytest.fixture
def terms_v1() -> TermsVersion:
    return publish("2026-01", ago=timedelta(days=30))


def test_portal_pages_redirect_to_terms_until_accepted(
    client: Client, email_user: User, outbox_code, terms_v1: TermsVersion
) -> None:
    email_sign_in(client, email_user, outbox_code)
    for url in PORTAL_PAGES:
        response = client.get(url)
        assert response.status_code == 302 and response.url == "/terms/", url
    page = client.get("/terms/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "I have read and agree to these terms of use." in text
    assert "CONTINUE" in text
    assert "version 2026-01" in text
    response = client.post("/terms/", {"agree": "yes"}, REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 302 and response.url == "/home/"
    for url in PORTAL_PAGES:
        assert client.get(url).status_code == 200, url


def test_acceptance_records_user_version_time_and_address(
    client: Client, email_user: User, outbox_code, terms_v1: TermsVersion
) -> None:
    email_sign_in(client, email_user, outbox_code)
    before = timezone.now()
    client.post("/terms/", {"agree": "yes"}, REMOTE_ADDR="203.0.113.9")
    acceptance = TermsAcceptance.objects.get()
    assert acceptance.user == email_user
    assert acceptance.terms == terms_v1
    assert before <= acceptance.accepted_at <= timezone.now()
    assert acceptance.client_ip == "203.0.113.9"
    assert AuditEvent.objects.filter(
        event="terms.accept", outcome="2026-01", user_id_snapshot=email_user.pk
    ).exists()


def test_continue_without_the_box_is_refused(
    client: Client, email_user: User, outbox_code, terms_v1: TermsVersion
) -> None:
    email_sign_in(client, email_user, outbox_code)
    for data in [{}, {"agree": ""}, {"agree": "no"}, {"agree": "YES "}]:
        response = client.post("/terms/", data)
        assert response.status_code == 200
        assert "Please check the box to agree" in response.content.decode()
    assert not TermsAcceptance.objects.exists()
    assert client.get("/home/").url == "/terms/"


def test_a_new_version_is_asked_for_again(
    client: Client, email_user: User, outbox_code, terms_v1: TermsVersion
) -> None:
    accept(email_user, terms_v1, "192.0.2.1")
    email_sign_in(client, email_user, outbox_code)
    assert client.get("/home/").status_code == 200
    terms_v2 = publish("2026-02", ago=timedelta(seconds=1))
    assert client.get("/home/").url == "/terms/"
    client.logout()
    email_sign_in(client, email_user, outbox_code)
    assert client.get("/home/").url == "/terms/"
    assert "version 2026-02" in client.get("/terms/").content.decode()
    client.post("/terms/", {"agree": "yes"})
    assert client.get("/home/").status_code == 200
    accepted = set(
        TermsAcceptance.objects.filter(user=email_user).values_list("terms__version", flat=True)
    )
    assert accepted == {"2026-01", "2026-02"}
    assert needs_terms(email_user) is None
    assert current_terms() == terms_v2


def test_a_version_published_in_the_future_is_not_yet_in_force(
    client: Client, email_user: User, outbox_code, terms_v1: TermsVersion
) -> None:
    accept(email_user, terms_v1, "")
    TermsVersion.objects.create(
        version="2027-01", text="Later.", published_at=timezone.now() + timedelta(days=1)
    )
    email_sign_in(client, email_user, outbox_code)
    assert client.get("/home/").status_code == 200
    assert current_terms() == terms_v1


def test_terms_page_with_nothing_to_accept_goes_home(
    client: Client, email_user: User, outbox_code
) -> None:
    email_sign_in(client, email_user, outbox_code)
    assert client.get("/terms/").url == "/home/"
    assert client.post("/terms/", {"agree": "yes"}).url == "/home/"
    assert not TermsAcceptance.objects.exists()


def test_terms_page_requires_sign_in(client: Client, terms_v1: TermsVersion) -> None:
    response = client.get("/terms/")
    assert response.status_code == 302 and response.url.startswith("/?next=")
    response = client.post("/terms/", {"agree": "yes"})
    assert response.status_code == 302
    assert not TermsAcceptance.objects.exists()


def test_accepting_twice_keeps_the_first_record(email_user: User, terms_v1) -> None:
    accept(email_user, terms_v1, "192.0.2.1")
    accept(email_user, terms_v1, "192.0.2.2")
    assert TermsAcceptance.objects.get().client_ip == "192.0.2.1"


def test_a_new_user_meets_the_terms_right_after_mfa_registration(
    client: Client, org, terms_v1: TermsVersion
) -> None:
    register(client, org)
    open_link(client, registration_link("dana@clinic.example"))
    assert enroll(client, "complete-registration", "email", "dana@clinic.example").url == (
        "/home/"
    )
    assert client.get("/home/").url == "/terms/"
    client.post("/terms/", {"agree": "yes"})
    assert client.get("/home/").status_code == 200
    assert TermsAcceptance.objects.get().user.username == "dana.provider"


def test_needs_terms_chooses_as_the_orm_does(email_user):
    """The statement written once picks what the ORM's query picked: the newest version
    published by now (ties by id), unless this user accepted that very version."""
    from django.db.models import Exists, OuterRef

    from caregate.accounts import terms as terms_module

    def by_orm():
        accepted = TermsAcceptance.objects.filter(user=email_user, terms=OuterRef("pk"))
        found = (
            TermsVersion.objects.filter(published_at__lte=timezone.now())
            .annotate(accepted=Exists(accepted))
            .first()
        )
        return None if found is None or found.accepted else found

    TermsVersion.objects.all().delete()
    assert terms_module.needs_terms(email_user) is None is by_orm()
    now = timezone.now()
    TermsVersion.objects.create(version="future", text="f", published_at=now + timedelta(days=1))
    assert terms_module.needs_terms(email_user) is None is by_orm()
    old = TermsVersion.objects.create(version="1", text="a", published_at=now - timedelta(days=9))
    got = terms_module.needs_terms(email_user)
    assert got == old == by_orm() and got.published_at == old.published_at and got.text == "a"
    tie = now - timedelta(days=1)
    TermsVersion.objects.create(version="2a", text="b", published_at=tie)
    newest = TermsVersion.objects.create(version="2b", text="c", published_at=tie)
    assert terms_module.needs_terms(email_user) == newest == by_orm()
    terms_module.accept(email_user, old, "203.0.113.5")
    assert terms_module.needs_terms(email_user) == newest == by_orm(), "an older acceptance"
    terms_module.accept(email_user, newest, "203.0.113.5")
    assert terms_module.needs_terms(email_user) is None is by_orm()
