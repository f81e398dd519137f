"""Planted registration links (login CSRF into an attacker's account).

Anyone can make a browser GET /registration-link/<token>/ from another site. The attacker
registers an account of their own, then plants its link in the victim's browser, hoping
the victim completes (and signs in to) the attacker's account. The Continue page names the
account, a signed-in session is never switched, and a page shown for one link cannot spend
another that replaced it.
"""

from __future__ import annotations

import html
import re

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client

from caregate.accounts.models import User
from caregate.flows.registration_links import LINK_CHANGED, PURPOSE, mask_email, page_binding
from caregate.verification.links import issue_link
from caregate.verification.models import EmailLink
from caregate.verification.phones import national
from tests.registration_steps import register, registration_link

pytestmark = pytest.mark.django_db


def page_text(response) -> str:
    return html.unescape(response.content.decode())


def binding(response) -> str:
    match = re.search(r'name="link" value="([^"]+)"', response.content.decode())
    assert match, response.content.decode()[:2000]
    return match.group(1)


@pytest.fixture
def attackers_link(org) -> str:
    """The attacker registers their own account and keeps its emailed link."""
    register(
        Client(),
        org,
        username="mallory.m",
        email="mallory@evil.example",
        confirm_email="mallory@evil.example",
    )
    return registration_link("mallory@evil.example")


def plant(client: Client, path: str):
    """What a link or redirect on another site makes the victim's browser do."""
    landing = client.get(path)
    assert landing.status_code == 302 and landing.url == "/registration-link/"
    return client.get("/registration-link/")


def test_planted_link_page_names_the_attackers_account(client: Client, attackers_link) -> None:
    page = plant(client, attackers_link)
    text = page_text(page)
    assert "mallory.m" in text
    assert "m***@e***.example" in text
    assert "If this is not your account, do not continue" in text
    # The page names the account without giving its address (or the token) away.
    assert "mallory@evil.example" not in text
    assert attackers_link.strip("/").rsplit("/", 1)[1] not in page.content.decode()
    assert EmailLink.objects.get().used_at is None


def test_signed_in_victim_is_not_switched_to_the_attackers_account(
    signed_in: Client, attackers_link
) -> None:
    victim = int(signed_in.session[SESSION_KEY])
    page = plant(signed_in, attackers_link)
    assert "You are signed in" in page_text(page)
    assert "mallory.m" not in page_text(page)
    response = signed_in.post("/registration-link/")
    assert "You are signed in" in page_text(response)
    assert int(signed_in.session[SESSION_KEY]) == victim
    assert signed_in.get("/complete-registration/method/").status_code == 302
    # The attacker's link was neither kept nor spent.
    assert "caregate.pending_link" not in signed_in.session
    assert EmailLink.objects.get().used_at is None


def test_a_page_shown_for_the_victims_link_cannot_spend_a_planted_one(
    client: Client, org, make_user, attackers_link
) -> None:
    victim = make_user(username="victim.v", email="victim@clinic.example", mfa="none")
    own_token = issue_link(victim, PURPOSE, 1200)
    own_page = plant(client, f"/registration-link/{own_token}/")
    assert "victim.v" in page_text(own_page)
    assert binding(own_page) == page_binding(own_token)
    plant(client, attackers_link)  # in another tab, while the victim's page is open
    # The victim selects Continue on the page that named their own account.
    response = client.post("/registration-link/", {"link": binding(own_page)})
    assert response.status_code == 200
    assert LINK_CHANGED in page_text(response)
    assert "mallory.m" in page_text(response)
    assert not EmailLink.objects.filter(used_at__isnull=False).exists()
    assert client.get("/complete-registration/method/").status_code == 302


def test_link_is_still_single_use(client: Client, attackers_link) -> None:
    page = plant(client, attackers_link)
    used = client.post("/registration-link/", {"link": binding(page)})
    assert used.url == "/complete-registration/method/"
    replay = Client()
    page = plant(replay, attackers_link)
    assert "This link has already been used." in page_text(page)
    response = replay.post("/registration-link/", {"link": "anything"})
    assert "Registration Error" in page_text(response)
    assert replay.get("/complete-registration/method/").status_code == 302


def test_a_link_of_another_purpose_is_refused(client: Client, make_user) -> None:
    user = make_user(username="other.purpose", mfa="none")
    token = issue_link(user, "password-reset", 1200)
    page = plant(client, f"/registration-link/{token}/")
    assert "This link is not valid." in page_text(page)
    assert "other.purpose" not in page_text(page)
    response = client.post("/registration-link/")
    assert "This link is not valid." in page_text(response)
    assert EmailLink.objects.get().used_at is None
    assert User.objects.get(pk=user.pk).mfa_method == User.MfaMethod.NONE


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("dana@clinic.example", "d***@c***.example"),
        ("a@b.co.uk", "a***@b***.uk"),
        ("x@localhost", "x***@l***"),
        ("", "***@***"),
    ],
)
def test_mask_email_keeps_only_what_the_owner_recognises(email: str, masked: str) -> None:
    assert mask_email(email) == masked


# --- registering in a colleague's name ------------------------------------------------
# Whoever holds the organization's registration code can register a colleague's address
# (one with no account yet) with details of their choosing, then wait for the colleague to
# complete the account from the emailed link. The page shows the colleague those details
# before the link is spent, so a wrong FAX (where determination letters go) is seen.


def test_the_link_page_shows_what_the_account_was_registered_with(client: Client, org) -> None:
    register(
        Client(),
        org,
        username="dana.colleague",
        email="dana@clinic.example",
        confirm_email="dana@clinic.example",
        fax="(202) 555-0199",
    )
    page = plant(client, registration_link("dana@clinic.example"))
    text = page_text(page)
    assert "Dana O'Neil-Smith" in text
    assert org.name in text
    assert "100 Main Street, Suite 2, Jackson, MS 39201" in text
    assert "(601) 555-0143" in text
    assert "(202) 555-0199" in text
    assert "If any of them is not right, do not continue" in text
    # Still no full address (the page is for the address's owner, who knows it).
    assert "dana@clinic.example" not in text
    assert EmailLink.objects.get().used_at is None


def test_the_details_are_shown_as_text_not_markup(client: Client, make_user) -> None:
    user = make_user(
        username="markup.m",
        mfa="none",
        address1='<img src=x onerror="alert(1)">',
        fax="+12025550177",
    )
    page = plant(client, f"/registration-link/{issue_link(user, PURPOSE, 1200)}/")
    raw = page.content.decode()
    assert "<img src=x" not in raw
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in raw
    assert "(202) 555-0177" in page_text(page)


def test_an_account_with_no_details_shows_only_its_name(client: Client, make_user) -> None:
    user = make_user(username="bare.b", mfa="none")
    user.first_name = user.last_name = ""
    user.organization = None
    user.save()
    page = plant(client, f"/registration-link/{issue_link(user, PURPOSE, 1200)}/")
    raw = page.content.decode()
    assert "bare.b" in raw
    assert "<dt>NAME" not in raw and "<dt>FAX" not in raw and "<dt>ORGANIZATION" not in raw
    assert "If any of them is not right" not in page_text(page)


@pytest.mark.parametrize(
    ("stored", "shown"),
    [("+12025550144", "(202) 555-0144"), ("not a number", "not a number"), ("", "")],
)
def test_national_writes_a_stored_number_as_people_write_it(stored: str, shown: str) -> None:
    assert national(stored) == shown
