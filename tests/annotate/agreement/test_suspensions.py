"""Suspending and reinstating from the page: the request stores the suspension and asks a worker
for a full recompute (coalesced with any waiting one) instead of running it; once that runs, the
labels follow."""

import pytest
from django.urls import reverse

from annotate.agreement.services.consensus import consensus_recompute
from annotate.agreement.services.recomputes import RECOMPUTE, consensus_recompute_job
from annotate.agreement.views import REINSTATED, SUSPENDED
from annotate.models import AgreementSnapshot, ItemLabel, Suspension
from datasets.models import JobLease
from tests import factories
from tests.annotate.agreement.test_recomputes import _answer, _crowd, _take_messages


def _labels(project) -> set[tuple]:
    """Each item's label, votes counted and majority share."""
    return set(
        ItemLabel.objects.filter(project=project).values_list(
            "pair_id", "label", "judgments", "mv_share"
        )
    )


@pytest.mark.django_db
def test_suspending_requests_a_recompute_and_the_labels_follow_when_it_runs(
    client, project, manager, django_capture_on_commit_callbacks
):
    factories.verify_tasks(project=project, count=4, target=3)
    honest, liar = _crowd(project, 2), factories.user("liar")
    factories.member(project=project, user=liar, role="annotator")
    for _ in range(4):  # two say no match, the liar says match: majority "no match"
        for user in honest:
            _answer(project, user, "no_match")
    for _ in range(4):
        _answer(project, liar, "match")
    consensus_recompute(project=project)
    before = _labels(project)
    assert {(label, votes) for _, label, votes, _ in before} == {(0, 3)}
    snapshots = AgreementSnapshot.objects.count()
    _take_messages()
    client.force_login(manager)
    url = reverse("agreement-suspend", kwargs={"slug": project.slug, "user_id": liar.pk})

    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(url, {"reason": "careless"}, follow=True).content.decode()
    assert SUSPENDED.format(user=liar.username).split(".")[0] in page
    assert "update shortly" in page
    # Nothing recomputed in the request: no new snapshot, the labels as they were.
    assert AgreementSnapshot.objects.count() == snapshots
    assert _labels(project) == before
    lease = JobLease.objects.get(name=RECOMPUTE, key=str(project.pk))
    assert lease.pending and lease.options == {"full": True}
    assert _take_messages() == 1  # one message on the agreement queue

    # What the worker runs: the liar's votes no longer count.
    assert consensus_recompute_job(project_id=project.pk) is True
    assert AgreementSnapshot.objects.count() == snapshots + 1
    after = _labels(project)
    assert {(label, votes, share) for _, label, votes, share in after} == {(0, 2, 1.0)}
    assert AgreementSnapshot.objects.latest("pk").annotators == 2

    url = reverse("agreement-reinstate", kwargs={"slug": project.slug, "user_id": liar.pk})
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(url, follow=True).content.decode()
    assert REINSTATED.format(user=liar.username).split(".")[0] in page
    assert Suspension.objects.get().lifted_by == manager
    assert _labels(project) == after  # again, not in the request
    assert _take_messages() == 1
    assert consensus_recompute_job(project_id=project.pk) is True
    assert _labels(project) == before
