"""The manager's agreement pages, through real requests."""

import pytest
from django.urls import reverse

from annotate.agreement.services.consensus import consensus_recompute
from annotate.models import ItemLabel, Suspension
from annotate.queue.services.judgments import judgment_submit
from annotate.queue.services.leases import assignment_get
from datasets.models import Project
from tests import factories

pytestmark = pytest.mark.django_db

CHARTS = ["progress", "alpha", "accuracy-speed", "kappa", "labels", "disputed"]


@pytest.fixture
def judged(project, annotator):
    Project.objects.filter(pk=project.pk).update(max_judgments_per_item=2)
    tasks = factories.verify_tasks(project=project, count=3, target=2)
    other = factories.user("other")
    factories.member(project=project, user=other, role="annotator")
    for user, answer in ((annotator, "match"), (other, "no_match")):
        while lease := assignment_get(project=project, annotator=user, lookahead=0).current:
            judgment_submit(lease=lease, answer=answer)
    consensus_recompute(project=project)
    return tasks


def test_only_managers_see_the_dashboard(client, project, annotator, outsider):
    for name in ("agreement", "agreement-disputed"):
        url = reverse(name, kwargs={"slug": project.slug})
        client.force_login(annotator)
        assert client.get(url).status_code == 403
        client.force_login(outsider)
        assert client.get(url).status_code == 404
    client.force_login(annotator)
    recompute = reverse("agreement-recompute", kwargs={"slug": project.slug})
    assert client.post(recompute).status_code == 403


def test_dashboard_draws_every_chart_even_before_any_figures(client, project, manager):
    client.force_login(manager)
    page = client.get(reverse("agreement", kwargs={"slug": project.slug}))
    html = page.content.decode()
    assert page.status_code == 200 and "Not computed yet" in html
    for key in CHARTS:
        assert f'data-chart="{key}"' in html


def test_dashboard_shows_figures_table_and_freshness(client, project, manager, judged):
    client.force_login(manager)
    page = client.get(reverse("agreement", kwargs={"slug": project.slug}), {"sort": "name"})
    html = page.content.decode()
    assert page.status_code == 200
    assert "Computed 0" in html and "minutes ago" in html
    assert [row["name"] for row in page.context["dashboard"].annotators] == ["other", "annotator"]
    assert html.count("<svg") == len(CHARTS)
    assert "style=" not in html and "<script>" not in html


def test_recompute_suspend_reinstate_and_adjudicate_through_the_pages(
    client, project, manager, annotator, judged
):
    client.force_login(manager)
    slug = project.slug
    assert client.post(reverse("agreement-recompute", kwargs={"slug": slug})).status_code == 302
    disputed = client.get(reverse("agreement-disputed", kwargs={"slug": slug}))
    items = [view.item for view in disputed.context["items"]]
    assert len(items) == 3 and all(item.needs_manager for item in items)
    assert {view.state for view in disputed.context["items"]} == {"waiting"}
    assert items[0].pair.caption.text in disputed.content.decode()

    url = reverse("agreement-suspend", kwargs={"slug": slug, "user_id": annotator.pk})
    assert client.post(url, {"reason": "too fast"}).status_code == 302
    assert Suspension.objects.get(lifted_at=None).annotator == annotator
    url = reverse("agreement-reinstate", kwargs={"slug": slug, "user_id": annotator.pk})
    assert client.post(url).status_code == 302
    assert Suspension.objects.get().lifted_at is not None

    pair = items[0].pair
    url = reverse("agreement-adjudicate", kwargs={"slug": slug, "pair_id": pair.pk})
    assert client.post(url, {"label": "7"}).status_code == 400
    assert client.post(url, {"label": "1", "make_gold": "on"}).status_code == 302
    item = ItemLabel.objects.get(pair=pair)
    assert (item.adjudicated_label, item.adjudicated_by) == (1, manager)
    pair.refresh_from_db()
    assert pair.label == 1
    # A second decision is taken, and said: never a silent overwrite of the first.
    changed = client.post(url, {"label": "0"}, follow=True).content.decode()
    assert f"Decision changed from match (by {manager.username}) to no match." in changed
    pair.refresh_from_db()
    assert pair.label == 0


def test_final_label_figures_agree_with_the_label_bars_at_low_volume(client, project, manager):
    """Issue 15: a trusted caption used as a challenge's check has a final label (match) before
    anyone judged it; "items with a final label" counts it like the label bars do, and says so."""
    from annotate.models import ChallengeOption, Task, TaskKind
    from datasets.models import Pair, PairKind

    tasks = factories.verify_tasks(project=project, count=2, target=2)
    known = tasks[0].pair
    other = tasks[1].pair
    proposal = Pair.objects.create(
        image=known.image, caption=other.caption, kind=PairKind.RANDOM_NEGATIVE
    )
    challenge = Task.objects.create(
        project=project,
        kind=TaskKind.CHALLENGE,
        image=known.image,
        pair=known,
        target=2,
        random_key=1,
    )
    ChallengeOption.objects.create(task=challenge, pair=known, position=0, is_check=True)
    ChallengeOption.objects.create(task=challenge, pair=proposal, position=1)
    snapshot = consensus_recompute(project=project).snapshot
    assert (snapshot.items_total, snapshot.labels_match, snapshot.items_agreed) == (3, 1, 0)
    client.force_login(manager)
    page = client.get(reverse("agreement", kwargs={"slug": project.slug}))
    html = page.content.decode()
    assert "1 / 3</strong><span>items with a final label: 0 agreed, 0 decided" in html
    assert "1 known beforehand" in html
    dashboard = page.context["dashboard"]
    assert dashboard.final_labels == snapshot.labels_match + snapshot.labels_no_match
    progress = next(chart for chart in dashboard.charts if chart.key == "progress")
    assert "33.3%" in str(progress.shapes)  # 1 of 3, as the figure says
