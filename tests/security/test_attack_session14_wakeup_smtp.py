"""Session 14 review: the NOTIFY-woken task worker and the kept SMTP connection.

Attacker and bad-day tests for caregate/delivery/wakeup.py, the db_worker command and
caregate/delivery/smtp.py (with caregate/delivery/tasks.py's classification of failures).

Tests named ``..._found_...`` are what the review found, each fixed since (the docstring
says how); the ``test_held_...`` tests record what held.
"""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from django.core.mail import EmailMessage, get_connection
from django.db import connection as django_connection
from django.db import transaction

from caregate.delivery import smtp, tasks, wakeup
from tests.served import Inbox
from tests.test_delivery_wakeup import (  # noqa: F401 (fixtures)
    Queue,
    database_backend,
    listener,
    queue_on,
    queue_one,
    stop,
)
from tests.test_email_smtp import (  # noqa: F401 (fixtures)
    Collector,
    free_port,
    no_kept_connection,
    serve,
    smtp_server,
    smtp_settings,
)


# --- helpers -----------------------------------------------------------------------------
class Picky(Collector):
    """A Collector that can answer RCPT or NOOP with a chosen reply, and records every
    envelope it is given (sender and recipients), per session."""

    def __init__(self) -> None:
        super().__init__()
        self.rcpt_reply: dict[str, str] = {}  # address -> reply instead of 250
        self.noop_reply: str | None = None
        self.data_reply: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.rcpt_reply:
            return self.rcpt_reply[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_NOOP(self, server, session, envelope, arg) -> str:
        return self.noop_reply or "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.data_reply:
            return self.data_reply
        return await super().handle_DATA(server, session, envelope)


def mail(to: str | list[str] = "someone@example.com", sender: str | None = None) -> int:
    recipients = [to] if isinstance(to, str) else to
    return EmailMessage("Code", "Your code is 123456", sender, recipients).send(
        fail_silently=False
    )


def outcome_for(to: str) -> tasks.Outcome:
    """tasks.py's one email attempt (what the worker records for a delivery)."""
    delivery = SimpleNamespace(destination=to, subject="Code", body="Your code is 123456")
    return tasks._send_email(delivery)


@pytest.fixture
def picky(settings):
    handler = Picky()
    with serve(handler) as controller:
        smtp_settings(settings, controller.port)
        yield handler


# --- tasks.py's classification with the kept connection -----------------------------------
@pytest.mark.parametrize("reply", ["450 4.2.1 Mailbox busy", "451 4.7.1 Greylisted, retry"])
def test_found_a_4xx_refusal_of_the_recipient_is_retried(picky, reply):
    """Found (medium, reliability; in tasks.py, older than these two changes): a
    temporary refusal of the recipient (450/451 at RCPT, i.e. greylisting, the commonest
    4xx a mail server gives) raises smtplib.SMTPRecipientsRefused, which is not an
    SMTPResponseException, so tasks._send_email marks the code email failed for good
    (error "smtp-recipients-refused", retry=False) instead of retrying it. The user never
    gets the code from a greylisting provider. Fixed: tasks.py retries when any code is
    below 500."""
    assert mail("first@example.com") == 1  # a kept connection, then the refusal on it
    picky.rcpt_reply["grey@example.com"] = reply
    outcome = outcome_for("grey@example.com")
    assert outcome.ok is False
    assert outcome.retry is True, outcome


def test_found_a_421_at_rcpt_on_the_kept_connection_is_retried(picky):
    """Found (medium, reliability): a server that is going away (restart, idle limit
    reached between the NOOP and the message) answers 421 and closes. At MAIL or DATA that
    is retried (SMTPResponseException, code < 500); at RCPT smtplib raises
    SMTPRecipientsRefused and tasks.py marks the delivery failed for good. The kept
    connection makes 'server closes mid-way' an everyday event. Fixed with the above."""
    assert mail("first@example.com") == 1
    picky.rcpt_reply["victim@example.com"] = "421 4.3.2 Service shutting down"
    outcome = outcome_for("victim@example.com")
    assert outcome.retry is True, outcome


def test_held_a_5xx_refusal_of_the_recipient_fails_and_the_next_message_is_clean(picky):
    """Held: 550 at RCPT is a permanent failure; the next message (on a new connection,
    the refused one was dropped) carries only its own envelope, not the refused one's."""
    assert mail("first@example.com") == 1
    picky.rcpt_reply["nobody@example.com"] = "550 5.1.1 No such user"
    outcome = outcome_for("nobody@example.com")
    assert (outcome.ok, outcome.retry, outcome.error) == (False, False, "smtp-recipients-refused")
    assert mail("next@example.com") == 1
    assert [rcpt for _, rcpt, _ in picky.messages] == [["first@example.com"], ["next@example.com"]]
    assert picky.sessions == 2


@pytest.mark.parametrize(
    ("reply", "retry"), [("451 4.3.0 Try later", True), ("554 5.7.1 No", False)]
)
def test_held_a_data_refusal_on_the_kept_connection_is_classified_by_its_code(picky, reply, retry):
    assert mail("first@example.com") == 1
    picky.data_reply = reply
    outcome = outcome_for("second@example.com")
    assert (outcome.ok, outcome.retry) == (False, retry)
    picky.data_reply = None
    assert mail("third@example.com") == 1
    # Refused once, not delivered twice; the refused connection was not used again.
    assert [rcpt for _, rcpt, _ in picky.messages] == [
        ["first@example.com"],
        ["third@example.com"],
    ]
    assert picky.sessions == 2


def test_held_a_partly_refused_envelope_does_not_leak_into_the_next_message(picky):
    """One of two recipients refused: Django counts the message sent and the connection is
    kept (no error). The next message on it has its own sender and recipients only."""
    picky.rcpt_reply["gone@example.com"] = "550 5.1.1 No such user"
    assert mail(["old@example.com", "gone@example.com"], sender="a@caregate.invalid") == 1
    assert mail("new@example.com", sender="b@caregate.invalid") == 1
    assert picky.sessions == 1
    assert [(frm, rcpt) for frm, rcpt, _ in picky.messages] == [
        ("a@caregate.invalid", ["old@example.com"]),
        ("b@caregate.invalid", ["new@example.com"]),
    ]
    assert b"old@example.com" not in picky.messages[1][2]


def test_held_a_421_answer_to_noop_gets_a_new_connection_and_one_delivery(picky):
    """The server's idle limit: it answers 421 and closes. Found by the NOOP, replaced; the
    message goes out once, on the new connection."""
    assert mail("first@example.com") == 1
    picky.noop_reply = "421 4.4.2 Idle timeout, closing"
    assert mail("second@example.com") == 1
    assert len(picky.messages) == 2
    assert picky.sessions == 2


def test_held_a_server_that_closed_the_socket_mid_way_is_retried_not_lost(picky):
    """The connection dies after the NOOP (closed under the client): the attempt fails as
    a transient error (retried by tasks.py), and the next attempt is delivered once."""
    assert mail("first@example.com") == 1
    kept = smtp._kept.entry.connection
    real_noop = kept.noop

    def noop_then_die():
        answer = real_noop()
        kept.sock.shutdown(socket.SHUT_RDWR)  # the server went away just after the NOOP
        return answer

    kept.noop = noop_then_die
    outcome = outcome_for("second@example.com")
    assert (outcome.ok, outcome.retry) == (False, True)
    assert mail("second@example.com") == 1
    assert [rcpt for _, rcpt, _ in picky.messages] == [
        ["first@example.com"],
        ["second@example.com"],
    ]


def test_held_new_credentials_get_a_new_connection_and_are_the_ones_used(settings):
    """Password rotation: the connection authenticated with the old password is never used
    for a message after the settings change."""
    logins: list[tuple[int, str, str]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((id(session), auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True)

    handler = Collector()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    try:
        smtp_settings(settings, controller.port)
        settings.EMAIL_HOST_USER = "caregate"
        settings.EMAIL_HOST_PASSWORD = "old-secret"
        assert mail("one@example.com") == 1
        assert mail("two@example.com") == 1
        settings.EMAIL_HOST_PASSWORD = "new-secret"
        assert mail("three@example.com") == 1
    finally:
        controller.stop()
    assert [(user, pw) for _, user, pw in logins] == [
        ("caregate", "old-secret"),
        ("caregate", "new-secret"),
    ]
    assert handler.sessions == 2


def test_held_a_forked_child_never_writes_on_the_parents_connection(smtp_server):  # noqa: F811
    """A fork (gunicorn --preload after a send, a subprocess helper): the child opens its
    own connection, its discard() does not QUIT the parent's, and the parent's kept
    connection still carries its next message."""
    handler = smtp_server
    assert mail("parent-1@example.com") == 1
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            code = 0 if mail("child@example.com") == 1 else 1
            smtp.discard()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert mail("parent-2@example.com") == 1
    assert handler.sessions == 2  # the parent's (kept, reused) and the child's
    assert [rcpt for _, rcpt, _ in handler.messages] == [
        ["parent-1@example.com"],
        ["child@example.com"],
        ["parent-2@example.com"],
    ]


def test_found_one_backend_instance_shared_by_two_threads_never_shares_a_socket(
    smtp_server,  # noqa: F811
    monkeypatch,
):
    """Found (low, latent: Caregate's own code makes a backend per message): Django's
    SMTP backend may be shared between threads (its send_messages holds self._lock). The
    subclass clears self.connection only after the lock is released, so a second thread
    that enters send_messages in that gap finds the first thread's kept connection in
    self.connection and sends on it: one SMTP socket written by two threads, the one thing
    the per-thread keeping promises never to do (interleaved commands could mix two
    messages' envelopes). Reproduced deterministically by pausing thread A in the gap.
    Fixed: the subclass holds the (reentrant) lock until it has handed the connection
    back."""
    backend = get_connection()
    used_by: dict[int, set[int]] = {}
    seen: list[smtplib.SMTP] = []  # held, so a freed connection's id is never reused
    real_sendmail = smtplib.SMTP.sendmail

    def recording_sendmail(self, *args, **kwargs):
        seen.append(self)
        used_by.setdefault(id(self), set()).add(threading.get_ident())
        return real_sendmail(self, *args, **kwargs)

    monkeypatch.setattr(smtplib.SMTP, "sendmail", recording_sendmail)
    parent_send = smtp.smtp.EmailBackend.send_messages
    in_gap, b_done = threading.Event(), threading.Event()

    def pausing_send(self, messages):
        sent = parent_send(self, messages)
        if threading.current_thread().name == "A":
            in_gap.set()  # the lock is released; self.connection not yet cleared
            b_done.wait(10)
        return sent

    monkeypatch.setattr(smtp.smtp.EmailBackend, "send_messages", pausing_send)
    message = EmailMessage("Code", "Your code is 123456", None, ["x@example.com"])

    def thread_b():
        in_gap.wait(10)
        try:
            backend.send_messages([message])
        finally:
            b_done.set()

    a = threading.Thread(target=backend.send_messages, args=([message],), name="A")
    b = threading.Thread(target=thread_b, name="B")
    a.start()
    b.start()
    a.join(20)
    b.join(20)
    shared = [conn for conn, threads in used_by.items() if len(threads) > 1]
    assert shared == [], "one SMTP connection was written by two threads"


# --- the wake-up (in-process, on PostgreSQL) ----------------------------------------------
def test_held_a_task_committed_before_the_wait_is_not_lost(database_backend, listener):  # noqa: F811
    """Committed between the worker's look and its wait (or while a task ran): the
    notification waits on the listening connection, and the next wait returns at once."""
    queue_one()
    time.sleep(0.3)
    started = time.monotonic()
    assert listener.wait(30) is True
    assert time.monotonic() - started < 1


def test_held_a_task_queued_in_a_rolled_back_savepoint_wakes_nobody(database_backend, listener):  # noqa: F811
    with transaction.atomic():
        try:
            with transaction.atomic():
                queue_one()
                raise RuntimeError("inner block failed")
        except RuntimeError:
            pass
        assert listener.wait(0.3) is False
    # The outer transaction committed, but the NOTIFY was in the rolled-back savepoint.
    assert listener.wait(0.5) is False


def test_held_every_worker_is_woken_by_one_task(database_backend, listener):  # noqa: F811
    """Several workers: NOTIFY reaches every listener; each looks (SKIP LOCKED gives the
    task to one), none waits out its interval."""
    second = wakeup.Listener("default")
    try:
        queue_one()
        assert listener.wait(5) is True
        assert second.wait(5) is True
    finally:
        second.close()


def test_held_ten_thousand_stray_notifications_cost_a_few_looks_and_no_spin(listener):  # noqa: F811
    """Anyone with a database login can NOTIFY caregate_tasks. 10,000 notifications (10,000
    transactions) sent before the worker waits are drained together: a few looks at the
    queue, not 10,000, and no busy loop afterwards."""
    params = django_connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as attacker, attacker.pipeline():
        for _ in range(10_000):
            attacker.execute(f"NOTIFY {wakeup.CHANNEL}")
    time.sleep(0.5)
    looks = 0
    cpu = time.process_time()
    while listener.wait(0.5):
        looks += 1
        assert looks < 50, "the worker looks once per stray notification"
    assert looks <= 5
    assert time.process_time() - cpu < 2
    assert listener.wait(0.3) is False  # quiet again: no spin


# --- a listening connection that died without a word --------------------------------------
class Blackhole:
    """A TCP relay to PostgreSQL that can stop relaying while keeping both sockets open:
    what a NAT or firewall that forgot an idle connection, or a vanished host, looks like
    from the client (no FIN, no RST, nothing)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.silent = threading.Event()
        self.stopped = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.1)
        while not self.stopped.is_set():
            if self.silent.is_set():
                time.sleep(0.05)
                continue
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            dst.sendall(data)

    def close(self) -> None:
        self.stopped.set()
        self.server.close()
        for s in self.sockets:
            s.close()


def test_found_a_silently_dead_listening_connection_is_noticed(
    database_backend,  # noqa: F811
    transactional_db,
    monkeypatch,
):
    """Found (low, reliability): the Listener's connection was only ever read. When it
    dies without a FIN or RST (a NAT or firewall idle timeout on the worker's idle LISTEN
    connection, a failover whose old host vanished), wait() returns False at every timeout
    forever: no keepalive, no ping, nothing raises, so the worker neither exits (for
    deploy/serve.sh to restart it) nor logs. Every code then waits for the timed look (1 s
    under make serve, --interval in general) instead of going out at once, silently.
    Fixed: after PING_AFTER_SECONDS without a notification the listener sends one through
    the other connection and raises ListenerLost if it does not come back (here after 1 s
    of quiet, then the ping's 5 s)."""
    monkeypatch.setattr(wakeup, "PING_AFTER_SECONDS", 1.0)
    params = django_connection.get_connection_params()
    hole = Blackhole((params.get("host") or "127.0.0.1", int(params.get("port") or 5432)))
    wrapper = wakeup.connections["default"]
    wrapper.ensure_connection()  # Django's own connection stays direct
    with monkeypatch.context() as patch:  # only the listener's goes through the relay
        relayed = {**params, "host": "127.0.0.1", "port": hole.port}
        patch.setattr(wrapper, "get_connection_params", lambda: relayed)
        deaf = wakeup.Listener("default")
    try:
        queue_one()
        assert deaf.wait(5) is True  # relayed: it works
        hole.silent.set()  # the path goes quiet; both ends still think it is up
        time.sleep(0.5)  # no relay is inside a recv() any more
        queue_one()
        noticed = False
        try:
            for _ in range(6):
                if deaf.wait(1):
                    noticed = True
                    break
        except wakeup.ListenerLost:
            noticed = True  # the worker ends and is started again
        assert noticed, "a queued task's wake-up was lost and the dead listener went unnoticed"
    finally:
        hole.close()
        deaf.close()


# --- a real worker process ----------------------------------------------------------------
class SlowInbox(Inbox):
    """An Inbox whose DATA answer takes ``delay`` seconds (a slow mail server)."""

    def __init__(self) -> None:
        super().__init__()
        self.delay = 0.0
        self.in_data = threading.Event()

    async def handle_DATA(self, server, session, envelope) -> str:
        self.in_data.set()
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture(scope="module")
def slow_queue():
    with queue_on("s14", SlowInbox()) as setup:
        yield setup


def delivery_status(queue: Queue, to: str) -> list[str]:
    with psycopg.connect(queue.database_url, autocommit=True) as probe:
        rows = probe.execute(
            "SELECT status FROM delivery_delivery WHERE destination = %s", (to,)
        ).fetchall()
    return [status for (status,) in rows]


def test_held_sigterm_during_a_task_finishes_it_once_and_exits_0(slow_queue):
    """SIGTERM while the worker is inside a task (the mail server slow to answer DATA):
    the task finishes, the email is delivered once and recorded sent, the worker exits 0
    and its LISTEN connection is gone."""
    inbox = slow_queue.inbox
    inbox.delay, inbox.in_data = 3.0, threading.Event()
    worker = slow_queue.worker()
    try:
        slow_queue.queue("sigterm@example.com")
        assert inbox.in_data.wait(15), "the worker never started the task"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        inbox.delay = 0.0
        if worker.poll() is None:
            stop(worker)
    assert len(inbox.to("sigterm@example.com")) == 1
    assert delivery_status(slow_queue, "sigterm@example.com") == ["sent"]
    assert slow_queue.listening_backends() == []


def test_held_every_backend_of_the_worker_terminated_ends_it_non_zero(slow_queue):
    """A PostgreSQL restart, seen from the worker: all of its connections are cut at once
    while it waits. It ends with a failure (deploy/serve.sh starts it again), not a hang."""
    worker = slow_queue.worker()
    try:
        with psycopg.connect(slow_queue.database_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        assert worker.wait(timeout=20) != 0
    finally:
        if worker.poll() is None:
            stop(worker)


def test_held_a_notification_flood_at_a_real_worker_costs_little_cpu(slow_queue):
    """10,000 stray NOTIFYs at a real, idle worker (30-second poll): its CPU stays small
    (a handful of looks, not 10,000) and it keeps sending codes at once afterwards."""
    worker = slow_queue.worker()
    try:
        before = process_cpu(worker.pid)
        attacker = psycopg.connect(slow_queue.database_url, autocommit=True)
        with attacker, attacker.pipeline():
            for _ in range(10_000):
                attacker.execute(f"NOTIFY {wakeup.CHANNEL}")
        time.sleep(2)
        used = process_cpu(worker.pid) - before
        assert used < 1.0, f"{used:.2f} s of worker CPU for 10,000 stray notifications"
        slow_queue.queue("after-flood@example.com")
        assert slow_queue.wait_mail("after-flood@example.com", seconds=10) < 10
        assert worker.poll() is None
    finally:
        assert stop(worker) == 0


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
