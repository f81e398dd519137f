"""Playwright in Debian's headless Chromium against pytest-django's live server."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from caregate.accounts.models import User
from tests.browser.helpers import sign_in_by_email

# Playwright's sync API runs an event loop in this thread; the ORM calls that tests make
# (factories, reading the outbox) are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CAREGATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def close_context(context: BrowserContext) -> None:
    """Close a browser context once its pages have finished loading.

    Closing has no timeout; closing a page in the middle of a navigation once left a run
    waiting forever (see helpers.close_tab). A page that fails to load within the context's
    timeout raises here, which fails the test instead of hanging it.
    """
    for open_page in context.pages:
        open_page.wait_for_load_state("load")
    context.close()


@pytest.fixture
def page(browser: Browser, live_server) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    close_context(context)


_axe = Axe()


@pytest.fixture
def axe_check() -> callable:
    """Run axe-core on the page; fail on any serious or critical violation."""

    def check(page: Page) -> None:
        # axe runs through page.evaluate, which has no timeout of its own: never start it
        # on a page that is still loading.
        page.wait_for_load_state("load")
        results = _axe.run(page)
        bad = [
            v for v in results.response["violations"] if v.get("impact") in {"serious", "critical"}
        ]
        assert not bad, "\n".join(
            f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']]}"
            for v in bad
        )

    return check


@pytest.fixture
def nojs_page(browser: Browser, live_server) -> Iterator[Page]:
    """A browser with JavaScript turned off: every page must still work without it."""
    context = browser.new_context(java_script_enabled=False, base_url=live_server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    close_context(context)


@pytest.fixture
def fresh_context(browser: Browser, live_server) -> Iterator[BrowserContext]:
    """A second, unrelated browser (its own cookies), e.g. for a replayed session cookie."""
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(10_000)
    yield context
    close_context(context)


@pytest.fixture
def sign_in(outbox_code: Callable[[str], str]) -> Callable[[Page, User], None]:
    """Sign a user in through the UI (Section 4, Email Login), ending on the home page."""

    def run(page: Page, user: User) -> None:
        sign_in_by_email(page, user, outbox_code)

    return run
