"""config.db.atomic_retried: a transaction PostgreSQL aborts as a deadlock is run again."""

import threading

import pytest
from django.db import OperationalError, connection, connections, transaction

from config.db import atomic_retried
from datasets.models import JobLease


def test_a_deadlock_is_run_again_and_both_writers_finish(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("deadlock detection is PostgreSQL's; SQLite serialises writers")
    first = JobLease.objects.create(name="t", key="1")
    second = JobLease.objects.create(name="t", key="2")
    both_hold_one = threading.Barrier(2, timeout=10)
    tries = {"a": 0, "b": 0}
    errors = []

    def writer(name, order):
        def work():
            tries[name] += 1
            JobLease.objects.filter(pk=order[0]).update(again=True)
            if tries[name] == 1:  # the first try of each waits until both hold a row
                both_hold_one.wait()
            JobLease.objects.filter(pk=order[1]).update(again=True)

        try:
            atomic_retried(work)
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=writer, args=("a", (first.pk, second.pk))),
        threading.Thread(target=writer, args=("b", (second.pk, first.pk))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(tries.values()) == [1, 2]  # PostgreSQL aborted one; it ran again
    assert JobLease.objects.filter(again=True).count() == 2


def test_other_errors_and_an_outer_transaction_are_not_retried(db):
    calls = []

    def work():
        calls.append(1)
        raise OperationalError("not a deadlock")

    with pytest.raises(OperationalError):
        atomic_retried(work)
    assert calls == [1]
    with transaction.atomic(), pytest.raises(OperationalError):
        atomic_retried(work)
    assert calls == [1, 1]
