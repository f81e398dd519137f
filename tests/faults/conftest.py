"""One served Caregate on private servers for the fault tests that need a real process
(tests/faults/deployment.py); each test leaves every server running again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.deployment import Deployment

USERS = 12


@pytest.fixture(scope="session")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    served = Deployment(tmp_path_factory.mktemp("faults"), users=USERS)
    try:
        served.setup()
        yield served
    finally:
        served.cleanup()


@pytest.fixture
def served(deployment: Deployment) -> Iterator[Deployment]:
    """The deployment, with every server back up after the test whatever it did."""
    yield deployment
    if not deployment.redis.running:
        deployment.redis.start()
    if not deployment.postgres.started:
        deployment.postgres.start()
    if deployment.mail.controller is None:
        deployment.mail.start()
    deployment.mail.inbox.refusing = False
    deployment.wait_ready()
