"""The home page after sign-in: header, navigation, counters, the saved-requests table,
the case search, and the pages the navigation opens."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from caregate.accounts.models import Organization, User
from caregate.portal.models import Message
from tests.browser.helpers import add_case, visible_text

pytestmark = pytest.mark.django_db(transaction=True)

# The guide's order, with the three external modules configured.
ALL_MODULES = [
    "HOME",
    "CASES",
    "CREATE CASE",
    "CONSUMERS",
    "SETUP",
    "MESSAGE CENTER",
    "REPORTS",
    "Help",
]
EXTERNAL = {
    "CAREGATE_CREATE_CASE_URL": "https://cases.example.com/new",
    "CAREGATE_CONSUMERS_URL": "https://consumers.example.com/",
    "CAREGATE_REPORTS_URL": "https://reports.example.com/",
}


@pytest.fixture
def other_org(make_org) -> Organization:
    return make_org(name="Elsewhere Home Care")


@pytest.fixture
def portal_data(email_user: User, other_org: Organization, make_user) -> None:
    """Rows of the user's organization and of another one, which must never be counted."""
    mine = email_user.organization
    colleague = make_user(organization=mine)
    stranger = make_user(organization=other_org)
    for n in range(2):
        add_case(mine, f"C-W{n}", "wip")
    for n in range(3):
        add_case(mine, f"C-N{n}", "not_submitted", name=f"Saved Person {n}", program=f"P-N{n}")
    add_case(mine, "C-S0", "submitted", program="P-77")
    for n in range(5):
        add_case(other_org, f"X-W{n}", "wip")
    for n in range(4):
        add_case(other_org, f"X-N{n}", "not_submitted", name=f"Foreign Saved {n}")
    for n in range(6):
        add_case(other_org, f"X-S{n}", "submitted")
    Message.objects.create(organization=mine, subject="To everyone", body="For the whole org")
    Message.objects.create(
        organization=mine, recipient=email_user, subject="Just for you", body="b"
    )
    Message.objects.create(organization=mine, subject="Already read", body="c").read_by.add(
        email_user
    )
    Message.objects.create(organization=mine, recipient=colleague, subject="Colleague's", body="d")
    Message.objects.create(organization=other_org, subject="Foreign news", body="e")
    Message.objects.create(organization=other_org, recipient=stranger, subject="Foreign", body="f")


def nav_links(page: Page) -> list[str]:
    return page.get_by_role("navigation", name="Portal").get_by_role("link").all_inner_texts()


def summary(page: Page) -> str:
    return visible_text(page.get_by_role("region", name="Summary"))


def saved_table(page: Page) -> Locator:
    return page.get_by_role("region", name="Request Saved But Not Submitted").get_by_role("table")


def test_header_shows_brand_contract_and_user(
    page: Page, email_user: User, sign_in, settings, axe_check
) -> None:
    settings.CAREGATE_BRAND_NAME = "Kepro"
    sign_in(page, email_user)
    header = page.get_by_role("banner")
    # The brand follows its setting (the diamond before it is decoration, aria-hidden).
    expect(header.get_by_text(re.compile(r"^\W*Kepro$"))).to_be_visible()
    expect(header.get_by_text("Contract:")).to_have_text(
        f"Contract: {email_user.organization.name}"
    )
    expect(header.get_by_text(email_user.display_name, exact=True)).to_be_visible()
    assert email_user.display_name == f"Pat {email_user.last_name}"
    expect(header.get_by_role("button", name="Sign out")).to_be_visible()
    search = header.get_by_role("search")
    expect(search.get_by_label("Search for Case # or Program #")).to_be_editable()
    expect(search.get_by_role("button", name="SEARCH")).to_be_visible()
    expect(page.get_by_role("heading", name="HOME", level=1)).to_be_visible()
    axe_check(page)


def test_navigation_without_external_modules(
    page: Page, email_user: User, sign_in, settings
) -> None:
    for name in EXTERNAL:
        setattr(settings, name, "")
    sign_in(page, email_user)
    # The guide's whole menu stays; unconfigured modules open a page that says so.
    assert nav_links(page) == ALL_MODULES
    expect(page.get_by_role("link", name="HOME", exact=True)).to_have_attribute(
        "aria-current", "page"
    )


def test_navigation_with_external_modules(page: Page, email_user: User, sign_in, settings) -> None:
    for name, url in EXTERNAL.items():
        setattr(settings, name, url)
    sign_in(page, email_user)
    assert nav_links(page) == ALL_MODULES
    nav = page.get_by_role("navigation", name="Portal")
    expect(nav.get_by_role("link", name="CREATE CASE")).to_have_attribute(
        "href", EXTERNAL["CAREGATE_CREATE_CASE_URL"]
    )
    expect(nav.get_by_role("link", name="CONSUMERS")).to_have_attribute(
        "href", EXTERNAL["CAREGATE_CONSUMERS_URL"]
    )
    expect(nav.get_by_role("link", name="REPORTS")).to_have_attribute(
        "href", EXTERNAL["CAREGATE_REPORTS_URL"]
    )


def test_only_one_module_configured(page: Page, email_user: User, sign_in, settings) -> None:
    settings.CAREGATE_CREATE_CASE_URL = ""
    settings.CAREGATE_CONSUMERS_URL = ""
    settings.CAREGATE_REPORTS_URL = EXTERNAL["CAREGATE_REPORTS_URL"]
    sign_in(page, email_user)
    assert nav_links(page) == ALL_MODULES
    nav = page.get_by_role("navigation", name="Portal")
    expect(nav.get_by_role("link", name="REPORTS")).to_have_attribute(
        "href", EXTERNAL["CAREGATE_REPORTS_URL"]
    )


def test_empty_home_page_reads_like_the_guide(page: Page, email_user: User, sign_in) -> None:
    sign_in(page, email_user)
    assert summary(page) == (
        "0 NEW MESSAGES Go to Message Center WORK-IN-PROGRESS 0 NOT SUBMITTED 0 SUBMITTED 0"
    )
    table = saved_table(page)
    expect(table.get_by_role("columnheader")).to_have_text(
        ["CONTRACT", "CASE TYPE", "CONSUMER ID", "CONSUMER NAME", "DATE OF BIRTH", "LAST MODIFIED"]
    )
    expect(table.get_by_role("row")).to_have_count(2)  # the header and "No records found."
    expect(table.get_by_role("cell", name="No records found.")).to_be_visible()


@pytest.mark.usefixtures("portal_data")
def test_counters_count_only_the_users_organization(page: Page, email_user: User, sign_in) -> None:
    sign_in(page, email_user)
    # 2 unread (to everyone, just for you); not the read one, a colleague's or another org's.
    assert summary(page) == (
        "2 NEW MESSAGES Go to Message Center WORK-IN-PROGRESS 2 NOT SUBMITTED 3 SUBMITTED 1"
    )


@pytest.mark.usefixtures("portal_data")
def test_saved_table_lists_the_not_submitted_cases(
    page: Page, email_user: User, sign_in, axe_check
) -> None:
    sign_in(page, email_user)
    table = saved_table(page)
    rows = table.get_by_role("row")
    expect(rows).to_have_count(4)  # header + 3 cases
    org = email_user.organization.name
    for n in range(3):
        row = rows.filter(has_text=f"Saved Person {n}")
        expect(row.get_by_role("cell")).to_have_text(
            [f"{org} contract", "Home Health", f"MC-C-N{n}", f"Saved Person {n}", "01/02/1970",
             re.compile(r"^\d{2}/\d{2}/\d{4} \d{1,2}:\d{2} [AP]M$")]
        )  # fmt: skip
    expect(table.get_by_text("Foreign Saved")).to_have_count(0)
    expect(table.get_by_text("No records found.")).to_have_count(0)
    axe_check(page)


@pytest.mark.usefixtures("portal_data")
def test_message_center_shows_the_users_messages_and_clears_the_counter(
    page: Page, email_user: User, sign_in, axe_check
) -> None:
    sign_in(page, email_user)
    page.get_by_role("link", name="Go to Message Center").click()
    expect(page.get_by_role("heading", name="MESSAGE CENTER", level=1)).to_be_visible()
    subjects = page.get_by_role("article").get_by_role("heading")
    expect(subjects).to_have_count(3)
    expect(page.get_by_role("heading", name="To everyone New")).to_be_visible()
    expect(page.get_by_role("heading", name="Just for you New")).to_be_visible()
    expect(page.get_by_role("heading", name="Already read", exact=True)).to_be_visible()
    for foreign in ("Colleague's", "Foreign news", "Foreign"):
        expect(page.get_by_role("heading", name=foreign, exact=True)).to_have_count(0)
    axe_check(page)
    page.get_by_role("link", name="HOME", exact=True).click()
    expect(page.get_by_text("0 NEW MESSAGES")).to_be_visible()


def test_empty_message_center(page: Page, email_user: User, sign_in) -> None:
    sign_in(page, email_user)
    page.get_by_role("link", name="MESSAGE CENTER", exact=True).click()
    expect(page.get_by_role("heading", name="MESSAGE CENTER", level=1)).to_be_visible()
    expect(page.get_by_text("No records found.")).to_be_visible()


@pytest.mark.usefixtures("portal_data")
@pytest.mark.parametrize("query", ["C-N1", "c-n1", "P-N1"])
def test_search_finds_the_case_on_the_cases_page(
    page: Page, email_user: User, sign_in, axe_check, query: str
) -> None:
    sign_in(page, email_user)
    page.get_by_label("Search for Case # or Program #").fill(query)
    page.get_by_role("button", name="SEARCH").click()
    expect(page.get_by_role("heading", name="CASES", level=1)).to_be_visible()
    expect(page.get_by_text(f"Results for “{query}”")).to_be_visible()
    rows = page.get_by_role("table").get_by_role("row")
    expect(rows).to_have_count(2)
    expect(rows.nth(1).get_by_role("cell").first).to_have_text("C-N1")
    expect(rows.nth(1)).to_contain_text("Saved Person 1")
    expect(rows.nth(1)).to_contain_text("Saved but not submitted")
    expect(page.get_by_role("link", name="CASES")).to_have_attribute("aria-current", "page")
    axe_check(page)


@pytest.mark.usefixtures("portal_data")
def test_search_never_finds_another_organizations_case(
    page: Page, email_user: User, sign_in
) -> None:
    sign_in(page, email_user)
    page.get_by_label("Search for Case # or Program #").fill("X-N0")
    page.get_by_role("button", name="SEARCH").click()
    expect(page.get_by_role("cell", name="No records found.")).to_be_visible()
    expect(page.get_by_text("Foreign Saved 0")).to_have_count(0)


@pytest.mark.usefixtures("portal_data")
def test_cases_page_lists_all_of_the_organizations_cases(
    page: Page, email_user: User, sign_in
) -> None:
    sign_in(page, email_user)
    page.get_by_role("link", name="CASES", exact=True).click()
    rows = page.get_by_role("table").get_by_role("row")
    expect(rows).to_have_count(1 + 6)
    expect(page.get_by_role("table")).not_to_contain_text("X-")


def test_help_and_setup_pages(page: Page, email_user: User, sign_in, axe_check) -> None:
    sign_in(page, email_user)
    page.get_by_role("link", name="Help", exact=True).click()
    expect(page.get_by_role("heading", name="Help", level=1)).to_be_visible()
    expect(page.get_by_text("LOGIN WITH EMAIL")).to_be_visible()
    axe_check(page)
    page.get_by_role("link", name="SETUP").click()
    expect(page.get_by_role("heading", name="Setup", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="My Account")).to_be_visible()
    axe_check(page)
