"""Password hashing at a lower CPU priority than the rest of the request cycle.

At the 8 a.m. rush the cores are shared by two kinds of work: the Argon2id hash of each
password step (20-40 ms of CPU) and every other page of a sign-in (3-15 ms each). When
they compete, a page that arrives behind a few hashes waits for them, and every screen of
the flow feels the rush. Linux lets a thread lower its own priority, so the hashes run
in a small pool of threads at a higher nice value (``CAREGATE_HASH_NICE``, 10 by
default): the scheduler gives the cores to the pages first and the hashes take the rest.
The CPU spent is the same; the queueing moves to the one step that waits for a hash
anyway.

Nothing about the check changes: the request waits for its hash's answer, exceptions
come back to it, and every hash goes this way (a right or wrong password, an unknown
account's stand-in hash, the legacy top-up), so timing stays equal between them.
argon2-cffi and hashlib release the GIL while they work, so the waiting request thread
costs nothing. Elsewhere than Linux (where a nice value is per process, not per thread)
or with ``CAREGATE_HASH_NICE=0`` the hash runs in the request's own thread, as before.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.conf import settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Enough for the requests one process serves at once (a sync worker: one; a threaded dev
# server or gthread worker: a few); more would only queue hashes behind each other.
_POOL_THREADS = 8

_in_pool = threading.local()


class _Pool:
    executor: ThreadPoolExecutor | None = None
    pid = 0
    nice = 0
    lock = threading.Lock()


def _lower_priority(nice: int) -> None:
    _in_pool.active = True
    try:
        # PRIO_PROCESS with a thread id: on Linux this thread only.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as error:  # a sandbox that forbids it: hash at the normal priority
        logger.warning("could not lower the password hashing threads' priority: %s", error)


def _executor(nice: int) -> ThreadPoolExecutor:
    with _Pool.lock:
        # A forked worker inherits the object but not its threads: make its own.
        if _Pool.executor is None or _Pool.pid != os.getpid() or _Pool.nice != nice:
            if _Pool.executor is not None and _Pool.pid == os.getpid():
                _Pool.executor.shutdown(wait=False)  # the setting changed (tests)
            _Pool.executor = ThreadPoolExecutor(
                max_workers=_POOL_THREADS,
                thread_name_prefix="password-hash",
                initializer=_lower_priority,
                initargs=(nice,),
            )
            _Pool.pid, _Pool.nice = os.getpid(), nice
        return _Pool.executor


def enabled() -> bool:
    return sys.platform == "linux" and settings.CAREGATE_HASH_NICE > 0


def run(work: Callable[..., T], *args: object) -> T:
    """``work(*args)`` in a lower-priority thread, waiting for its answer; inline when
    disabled or when already in one (a wrapped hash's inner Argon2 hash)."""
    if not enabled() or getattr(_in_pool, "active", False):
        return work(*args)
    return _executor(settings.CAREGATE_HASH_NICE).submit(work, *args).result()
