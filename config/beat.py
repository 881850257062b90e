"""Celery beat's scheduler, held by one beat per schedule file (settings: CELERY_BEAT_SCHEDULER).

Two beats on one schedule would send every periodic task twice and write one shelve at once
(Python's dbm.dumb, used where gdbm is absent, has no locking of its own). The first beat takes
an exclusive lock on ``<schedule file>.lock`` before it opens the schedule, and a second exits
with a message. The lock is the kernel's (flock): it goes with the process however that ends, a
SIGKILL included, so a beat killed mid-run leaves nothing that blocks the next one, unlike a
pidfile, whose number another process may have by the next start. The file holds the pid of the
beat that has it, for people.
"""

import fcntl
import os

from celery.beat import PersistentScheduler

BEAT_LOCKED = "Another beat (pid {pid}) holds {path}: this one exits, or every task would go twice."


def beat_lock(path: str) -> int:
    """Take the lock file ``path`` for this process's life; its descriptor.

    Raises SystemExit (the process ends with the message) when another process holds it.
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "?"
        os.close(descriptor)
        raise SystemExit(BEAT_LOCKED.format(pid=holder, path=path)) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    return descriptor


class LockedScheduler(PersistentScheduler):
    """The default file-based scheduler, which holds ``<schedule file>.lock`` while it runs."""

    def setup_schedule(self) -> None:
        self._lock = beat_lock(f"{self.schedule_filename}.lock")
        super().setup_schedule()
