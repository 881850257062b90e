import pytest
from django.urls import reverse

from training.registry import services
from training.registry.models import ModelVersion


@pytest.mark.django_db
@pytest.mark.parametrize("who, status", [("manager", 200), ("annotator", 403), ("outsider", 404)])
def test_only_managers_see_models(client, project, release, request, who, status):
    client.force_login(request.getfixturevalue(who))
    url = reverse("models", args=[project.slug])
    assert client.get(url).status_code == status
    assert client.post(url).status_code == (302 if status == 200 else status)
    assert ModelVersion.objects.count() == (1 if status == 200 else 0)


@pytest.mark.django_db
def test_models_page_shows_metrics_and_trains_now(
    client, project, manager, release, django_capture_on_commit_callbacks
):
    client.force_login(manager)
    url = reverse("models", args=[project.slug])
    assert b"No model yet" in client.get(url).content
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url, follow=True)
    assert len(callbacks) == 1 and b"queued" in response.content
    version = ModelVersion.objects.get()
    services.model_train(version_id=version.pk)
    page = client.get(url).content.decode()
    assert f'id="model-{version.pk}"' in page and "data-promoted" in page
    assert "Promoted" in page and "I→T R@1" in page and "T→I R@10" in page
    assert "<td>test</td>" in page and 'aria-current="page">Models' in page


@pytest.mark.django_db
def test_models_page_draws_charts_confusion_and_curves(client, project, manager, release, settings):
    settings.CONCORD_TRAIN_CONFIG = {**settings.CONCORD_TRAIN_CONFIG, "epochs": 2}
    client.force_login(manager)
    url = reverse("models", args=[project.slug])
    empty = client.get(url).content.decode()
    assert 'data-chart="versions-i2t-r1"' not in empty  # no chart before a ready model
    assert "Tonight at 02:00 UTC:</strong>" in empty and 'data-nightly="train"' in empty

    first = services.model_train(version_id=services.model_request(project=project).pk)
    second = services.model_train(version_id=services.model_request(project=project).pk)
    page = client.get(url).content.decode()
    for key in ("versions-i2t-r1", "versions-t2i-r1", "versions-rsum", "versions-f1"):
        assert f'data-chart="{key}"' in page
    assert f"#{first.pk} v1" in page and f"#{second.pk} v1" in page  # versions on the x axis
    assert ">promoted</text>" in page
    # Per split, rates as percentages; the threshold and the confusion on val and test.
    test = first.metrics["test"]
    assert f"<td>{100 * test['i2t_r1']:.1f}%</td>" in page
    assert f"{test['threshold']:.3f}" in page and "chosen on the validation split" in page
    assert 'data-split="val"' in page and 'data-split="test"' in page
    assert f'data-cell="tp">{test["tp"]} ' in page and f'data-cell="tn">{test["tn"]} ' in page
    # Training curves, one pair of charts per version, the newest one unfolded.
    assert f'data-chart="curves-{first.pk}-loss"' in page
    assert f'data-chart="curves-{second.pk}-val"' in page
    assert '<details class="curves" open>' in page
    assert "Training curves · 2 epochs" in page
    # Nothing new for tonight: the release already has a model with this config.
    assert 'data-nightly="skip"' in page and "already trained on v1" in page


@pytest.mark.django_db
def test_a_running_version_polls_its_card_until_it_ends(client, project, manager, release):
    client.force_login(manager)
    version = services.model_request(project=project, enqueue=False)
    card_url = reverse("model-card", args=[project.slug, version.pk])
    page = client.get(reverse("models", args=[project.slug])).content.decode()
    assert f'hx-get="{card_url}"' in page and 'hx-trigger="every 3s"' in page
    assert "waiting for a training worker" in page

    ModelVersion.objects.filter(pk=version.pk).update(
        status="training",
        epochs_done=1,
        config={**version.config, "epochs": 4},
        history=[{"epoch": 1, "train": {"loss": 1.25}, "val": {"i2t_r1": 0.5, "t2i_r1": 0.25}}],
    )
    card = client.get(card_url, headers={"HX-Request": "true"})
    html = card.content.decode()
    assert card.status_code == 200 and "<html" not in html  # the card alone
    assert '<progress max="100" value="25">' in html and "Epoch 1 of 4" in html
    assert "loss 1.2500" in html and "50.0% image→text" in html
    assert f'hx-get="{card_url}"' in html

    services.model_train(version_id=version.pk)  # the run ends (resumed from scratch here)
    ended = client.get(card_url, headers={"HX-Request": "true"})
    assert ended.headers["HX-Refresh"] == "true"  # the whole page reloads, charts included


@pytest.mark.django_db
@pytest.mark.parametrize("who, status", [("annotator", 403), ("outsider", 404)])
def test_only_managers_see_a_card(client, project, release, request, who, status):
    version = services.model_request(project=project, enqueue=False)
    client.force_login(request.getfixturevalue(who))
    assert client.get(reverse("model-card", args=[project.slug, version.pk])).status_code == status


@pytest.mark.django_db
def test_a_failed_version_says_why(client, project, manager, release):
    client.force_login(manager)
    version = services.model_request(project=project, enqueue=False)
    ModelVersion.objects.filter(pk=version.pk).update(status="failed", error="ValueError: boom")
    page = client.get(reverse("models", args=[project.slug])).content.decode()
    assert '<p class="error">ValueError: boom</p>' in page
    assert "hx-get" not in page and 'data-chart="versions-f1"' not in page


@pytest.mark.django_db
def test_the_header_and_the_cards_agree(client, project, manager, release, settings):
    """The header's counts are the cards' statuses, its promoted model is the card marked
    promoted, with the score that card shows; the metric it names is the one promotion uses.
    (The header said "4 trained or queued" above a failed card, and never named the promoted
    version.)"""
    import re

    from django.utils import timezone

    def version(status, **fields):
        return ModelVersion.objects.create(
            project=project,
            release=release,
            config={"epochs": 3, "encoder": "scratch"},
            status=status,
            finished_at=timezone.now() if status in ("ready", "failed") else None,
            **fields,
        )

    client.force_login(manager)
    url = reverse("models", args=[project.slug])
    assert "none yet" in client.get(url).content.decode()

    version("ready", metric_name="rsum", metric_value=1.5, epochs_done=3)
    best = version("ready", metric_name="rsum", metric_value=2.25, epochs_done=3, is_promoted=True)
    version("failed", error="RuntimeError: out of memory")
    version("queued")
    page = client.get(url).content.decode()

    card_statuses = re.findall(r'data-model="\d+" data-status="(\w+)"', page)
    assert sorted(card_statuses) == ["failed", "queued", "ready", "ready"]
    header = re.search(r"data-model-counts>(.*?)</span>", page).group(1)
    assert header == "1 queued · 2 ready · 1 failed"
    for count, label in re.findall(r"(\d+) (\w+)", header):
        assert card_statuses.count(label) == int(count)

    summary = re.search(r"data-promoted-summary>(.*?)</p>", page, re.S).group(1)
    promoted_cards = re.findall(r'data-model="(\d+)" data-status="\w+" data-promoted', page)
    assert promoted_cards == [str(best.pk)]
    assert f'href="#model-{best.pk}">Model #{best.pk}</a>' in summary
    card_score = re.search(
        rf'id="model-{best.pk}".*?<strong data-score>(.*?)</strong>', page, re.S
    ).group(1)
    assert card_score == "R-sum 225.0 of 600" and f"validation {card_score}" in summary
    assert "validation score (R-sum: R@1, R@5 and R@10" in page

    # Another selection metric: the header says so (the card says what its run was scored on).
    settings.CONCORD_TRAIN_CONFIG = {**settings.CONCORD_TRAIN_CONFIG, "select_metric": "i2t_r1"}
    assert "validation score (i2t r1)" in client.get(url).content.decode()

    ModelVersion.objects.filter(pk=best.pk).update(is_promoted=False)
    summary = re.search(
        r"data-promoted-summary>(.*?)</p>", client.get(url).content.decode(), re.S
    ).group(1)
    assert "No promoted model" in summary
