"""A delivery left in "sending" by a worker that died mid-send (caregate.delivery.tasks):
past its lease a sweep takes the row over (one sweeper wins), retries it, or marks it
failed when its message expired or it had its last attempt; and the immediate backend's
inline send inserts the row already claimed (no claim UPDATE, no read back).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from caregate.audit.models import AuditEvent
from caregate.delivery import tasks
from caregate.delivery.models import Delivery, OutboxMessage
from tests.test_delivery_tasks import make_due, run_worker

pytestmark = pytest.mark.django_db

SWEEP = "caregate.delivery.tasks.sweep"
DELIVER = "caregate.delivery.tasks.deliver"


class WorkerDied(BaseException):
    """What a killed worker looks like to the row: the send started and nothing after it
    ran (not an Exception, so attempt() does not record it as a failed send)."""


@pytest.fixture(autouse=True)
def fresh_process():
    """Each test is a worker process that has scheduled no sweep yet."""
    tasks._Sweeps.next_at = None
    yield
    tasks._Sweeps.next_at = None


@pytest.fixture
def database_backend(settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    settings.CAREGATE_DELIVERY_BACKOFF_SECONDS = [5, 30]
    settings.CAREGATE_DELIVERY_LEASE_SECONDS = 30
    return settings


def queue_email(minutes: int = 10) -> Delivery:
    return tasks.enqueue(
        Delivery.Channel.EMAIL,
        "test",
        "someone@clinic.example",
        subject="Your code",
        body="Your code is 123456",
        send_before=timezone.now() + timedelta(minutes=minutes),
    )


def die_mid_send(monkeypatch) -> None:
    """The next worker run claims the row, starts the send and dies."""

    def killed(delivery: Delivery) -> tasks.Outcome:
        raise WorkerDied

    monkeypatch.setattr(tasks, "_send", killed)
    with transaction.atomic():  # as db_worker claims its tasks (a test may have no outer one)
        run_worker()
    monkeypatch.undo()


def age(delivery: Delivery, seconds: int) -> None:
    """Let ``seconds`` pass since the row was last written."""
    Delivery.objects.filter(pk=delivery.pk).update(
        updated_at=F("updated_at") - timedelta(seconds=seconds)
    )


def tasks_named(path: str, status: str = "READY") -> int:
    return DBTaskResult.objects.filter(task_path=path, status=status).count()


# --- a worker dies mid-send ---------------------------------------------------------------


def test_a_delivery_left_sending_is_sent_by_the_sweep_after_its_lease(
    monkeypatch, database_backend
):
    delivery = queue_email()
    die_mid_send(monkeypatch)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sending", 1)
    assert delivery.body, "the message is still there for the next attempt"
    # The worker scheduled a sweep before it claimed the row, due after the lease.
    [scheduled] = DBTaskResult.objects.filter(task_path=SWEEP, status="READY")
    assert scheduled.run_after > timezone.now() + timedelta(seconds=28)
    # Within the lease nothing happens: the worker may still be sending.
    assert tasks.recover_stale() == 0
    age(delivery, 31)
    make_due()
    run_worker()  # the sweep takes it over and queues the next attempt; then that attempt
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.body) == ("sent", 2, "")
    assert OutboxMessage.objects.filter(to="someone@clinic.example").count() == 1


def test_an_expired_message_left_sending_fails_and_is_never_sent(monkeypatch, database_backend):
    delivery = queue_email()
    die_mid_send(monkeypatch)
    Delivery.objects.filter(pk=delivery.pk).update(
        send_before=timezone.now() - timedelta(seconds=1)
    )
    age(delivery, 31)
    assert tasks.recover_stale() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error, delivery.body) == ("failed", "expired", "")
    assert tasks.page_state(delivery) == tasks.FAILED
    run_worker()
    assert not OutboxMessage.objects.exists()
    assert AuditEvent.objects.filter(event="delivery.failed", outcome="expired").count() == 1


def test_the_attempt_that_died_counts(monkeypatch, database_backend):
    """Died during its last attempt: failed, not a fourth attempt."""
    delivery = queue_email()
    Delivery.objects.filter(pk=delivery.pk).update(attempts=2)  # two transient failures
    die_mid_send(monkeypatch)
    delivery.refresh_from_db()
    assert delivery.attempts == 3
    age(delivery, 31)
    assert tasks.recover_stale() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error, delivery.body) == ("failed", "interrupted", "")
    assert tasks_named(DELIVER) == 0
    run_worker()
    assert not OutboxMessage.objects.exists()


def test_rows_still_within_their_lease_and_finished_rows_are_left_alone(
    monkeypatch, database_backend
):
    sending = queue_email()
    die_mid_send(monkeypatch)
    age(sending, 29)
    done = queue_email()
    run_worker()
    age(done, 3600)
    assert tasks.recover_stale() == 0
    sending.refresh_from_db()
    done.refresh_from_db()
    assert (sending.status, done.status) == ("sending", "sent")


# --- exactly one wins ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_sweepers_racing_for_the_same_stale_row_retry_it_once(monkeypatch, database_backend):
    delivery = queue_email()
    die_mid_send(monkeypatch)
    age(delivery, 31)
    read, written = threading.Barrier(2, timeout=10), threading.Barrier(2, timeout=10)
    take_over = tasks._take_over

    def together(row: Delivery, now) -> bool:
        read.wait()  # both have read the same stale row; now both write
        won = take_over(row, now)
        written.wait()  # and neither goes on before both wrote
        return won

    monkeypatch.setattr(tasks, "_take_over", together)
    results: list[int] = []

    def sweeper() -> None:
        try:
            results.append(tasks.recover_stale())
        finally:
            connection.close()

    threads = [threading.Thread(target=sweeper) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [0, 1]
    assert tasks_named(DELIVER) == 1, "one next attempt queued, not two"
    monkeypatch.undo()
    with transaction.atomic():
        run_worker()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sent", 2)
    assert OutboxMessage.objects.count() == 1


def test_a_sweeper_that_read_the_row_before_a_write_takes_nothing(monkeypatch, database_backend):
    delivery = queue_email()
    die_mid_send(monkeypatch)
    age(delivery, 31)
    seen = Delivery.objects.get(pk=delivery.pk)
    assert tasks._take_over(Delivery.objects.get(pk=delivery.pk), timezone.now())
    assert not tasks._take_over(seen, timezone.now()), "updated_at changed: compare fails"


def test_a_late_worker_does_not_overwrite_the_attempt_that_replaced_it(database_backend):
    """The first worker was only slow: the sweep retried its row meanwhile. Its late
    outcome writes nothing, and above all does not blank the message the retry needs."""
    delivery = queue_email()
    slow = tasks._claim(delivery.pk, timezone.now())
    assert slow is not None and slow.attempts == 1
    age(delivery, 31)
    assert tasks.recover_stale() == 1
    assert Delivery.objects.get(pk=delivery.pk).status == "retrying"
    assert tasks._finish(slow, Delivery.Status.SENT) is False
    tasks._failed(slow, "smtp-550")
    tasks._retry(slow, "OSError", 0)
    row = Delivery.objects.get(pk=delivery.pk)
    assert (row.status, row.attempts) == ("retrying", 1) and row.body
    assert not AuditEvent.objects.filter(event="delivery.failed").exists()
    assert tasks_named(DELIVER) == 2, "the request's (not run here) and the sweep's: no third"
    run_worker()
    row.refresh_from_db()
    assert (row.status, row.attempts, row.body) == ("sent", 2, "")


def test_a_sweep_after_the_late_worker_finished_takes_nothing(database_backend):
    delivery = queue_email()
    slow = tasks._claim(delivery.pk, timezone.now())
    age(delivery, 31)
    stale = list(Delivery.objects.filter(status="sending"))
    assert tasks._finish(slow, Delivery.Status.SENT)
    assert not tasks._take_over(stale[0], timezone.now())
    assert Delivery.objects.get(pk=delivery.pk).status == "sent"


# --- the sweep is scheduled by the worker, and keeps itself going while rows are sending --


def test_a_worker_schedules_one_sweep_per_lease_not_one_per_claim(database_backend):
    for _ in range(3):
        queue_email()
    run_worker()
    assert tasks_named(SWEEP) == 1
    assert tasks_named(DELIVER, "SUCCESSFUL") == 3
    tasks._Sweeps.next_at = timezone.now() - timedelta(seconds=1)  # a lease later
    queue_email()
    run_worker()
    assert tasks_named(SWEEP) == 2


def test_a_sweep_watches_a_row_still_sending_and_does_not_multiply(monkeypatch, database_backend):
    delivery = queue_email()
    die_mid_send(monkeypatch)
    age(delivery, 10)  # 20 seconds of its lease left
    DBTaskResult.objects.filter(task_path=SWEEP).delete()  # that worker's sweep was lost
    before = timezone.now()
    assert tasks.sweep.call() == 0
    [next_sweep] = DBTaskResult.objects.filter(task_path=SWEEP, status="READY")
    assert before + timedelta(seconds=19) < next_sweep.run_after < before + timedelta(seconds=23)
    tasks.sweep.call()  # a second worker's sweep: one is already due, no other is added
    assert tasks_named(SWEEP) == 1
    age(delivery, 30)
    make_due()
    run_worker()
    delivery.refresh_from_db()
    assert delivery.status == "sent"
    # Nothing is sending any more: the chain of sweeps ends.
    assert tasks_named(SWEEP) == 0


def test_the_lease_defaults_to_a_bit_more_than_the_send_timeouts(settings):
    settings.CAREGATE_DELIVERY_LEASE_SECONDS = None
    settings.EMAIL_TIMEOUT = 10
    settings.TWILIO_TIMEOUT_SECONDS = 12
    assert tasks.lease() == timedelta(seconds=34)
    settings.CAREGATE_DELIVERY_LEASE_SECONDS = 90
    assert tasks.lease() == timedelta(seconds=90)


def test_the_immediate_backend_schedules_no_sweep(settings):
    queue_email()
    assert not DBTaskResult.objects.exists()


# --- the immediate backend: the row is born claimed -----------------------------------------


def delivery_statements(captured: CaptureQueriesContext) -> list[str]:
    return [
        query["sql"].split(" ", 1)[0]
        for query in captured.captured_queries
        if '"delivery_delivery"' in query["sql"]
    ]


def test_an_inline_send_inserts_the_row_claimed_and_writes_only_its_outcome():
    with CaptureQueriesContext(connection) as captured:
        delivery = queue_email()
    assert delivery_statements(captured) == ["INSERT", "UPDATE"]
    row = Delivery.objects.get(pk=delivery.pk)
    assert (row.status, row.attempts, row.body) == ("sent", 1, "")
    assert (delivery.status, delivery.attempts, delivery.body) == ("sent", 1, "")
    assert row.finished_at == delivery.finished_at
    assert OutboxMessage.objects.count() == 1


def test_an_inline_row_is_not_sent_again_by_a_duplicate_task():
    delivery = queue_email()
    assert tasks.attempt(delivery.pk) == "skipped"
    assert OutboxMessage.objects.count() == 1


def test_an_inline_retry_returns_the_row_as_the_last_attempt_left_it(monkeypatch, settings):
    settings.CAREGATE_DELIVERY_BACKOFF_SECONDS = [0, 0]
    outcomes = [tasks.Outcome(False, error="OSError", retry=True), tasks.Outcome(True)]
    monkeypatch.setattr(tasks, "_send", lambda delivery: outcomes.pop(0))
    delivery = queue_email()
    assert (delivery.status, delivery.attempts, delivery.body) == ("sent", 2, "")
    assert delivery.last_error == ""


def test_an_inline_send_that_fails_for_good_is_recorded_failed(monkeypatch):
    monkeypatch.setattr(tasks, "_send", lambda delivery: tasks.Outcome(False, error="smtp-550"))
    delivery = queue_email()
    assert (delivery.status, delivery.last_error, delivery.body) == ("failed", "smtp-550", "")
    assert Delivery.objects.get(pk=delivery.pk).status == "failed"
    assert tasks.page_state(delivery) == tasks.FAILED


# --- a worker dies after the queue handed it the task, before the attempt ----------------


def taken_and_dropped() -> DBTaskResult:
    """A worker takes the next delivery task from the queue (django-tasks' claim: the task
    row RUNNING) and is killed before it runs it: attempt() never starts."""
    with transaction.atomic():
        task_result = DBTaskResult.objects.ready().filter(task_path=DELIVER).get_locked()
        task_result.claim("worker-that-died")
    return task_result


def age_task(task_result: DBTaskResult, seconds: int) -> None:
    DBTaskResult.objects.filter(pk=task_result.pk).update(
        started_at=F("started_at") - timedelta(seconds=seconds)
    )


def test_a_delivery_whose_worker_died_before_the_attempt_is_queued_again(database_backend):
    delivery = queue_email()
    lost = taken_and_dropped()
    delivery.refresh_from_db()
    assert delivery.status == "queued" and tasks.recover_stale() == 0, "not 'sending'"
    assert tasks.recover_orphaned() == 0, "within the lease the worker may still run it"
    age_task(lost, 31)
    assert tasks.recover_orphaned() == 1
    lost.refresh_from_db()
    assert lost.status == "FAILED" and "WorkerLost" in lost.exception_class_path
    assert tasks.recover_orphaned() == 0, "a second sweeper finds nothing to do"
    run_worker()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.body) == ("sent", 1, "")
    assert OutboxMessage.objects.filter(to="someone@clinic.example").count() == 1


def test_a_slow_worker_and_the_new_task_send_once(database_backend):
    """The worker was only slow: it runs its attempt after the sweep queued another."""
    delivery = queue_email()
    lost = taken_and_dropped()
    age_task(lost, 31)
    assert tasks.recover_orphaned() == 1
    assert tasks.attempt(delivery.pk) == "sent"  # the slow worker, at last
    run_worker()  # the new task: the claim's compare-and-set finds it sent
    assert OutboxMessage.objects.filter(to="someone@clinic.example").count() == 1
    assert tasks_named(DELIVER, "SUCCESSFUL") == 1


def test_a_task_lost_after_its_delivery_finished_is_only_closed(database_backend):
    delivery = queue_email()
    lost = taken_and_dropped()
    assert tasks.attempt(delivery.pk) == "sent"  # sent, then killed before set_successful
    age_task(lost, 31)
    assert tasks.recover_orphaned() == 0
    lost.refresh_from_db()
    assert lost.status == "FAILED"
    assert tasks_named(DELIVER) == 0, "nothing queued again"
    assert OutboxMessage.objects.count() == 1


def test_the_sweep_recovers_a_lost_task_and_watches_one_still_running(database_backend):
    delivery = queue_email()
    lost = taken_and_dropped()
    age_task(lost, 10)  # 20 seconds of its lease left
    before = timezone.now()
    assert tasks.sweep.call() == 0
    [next_sweep] = DBTaskResult.objects.filter(task_path=SWEEP, status="READY")
    assert before + timedelta(seconds=19) < next_sweep.run_after < before + timedelta(seconds=23)
    age_task(lost, 30)
    make_due()
    run_worker()  # the sweep queues it again; then the new task sends it
    delivery.refresh_from_db()
    assert delivery.status == "sent"
