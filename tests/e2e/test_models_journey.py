"""A manager queues a training run, watches its card while it trains, and reads the result."""

import torch

from tests import factories
from tests.e2e.conftest import log_in
from tests.training.core.synthetic import tiny_config
from tests.training.registry.conftest import ready_release
from training.registry import services
from training.registry.models import ModelVersion


def test_manager_trains_a_model_and_reads_its_figures(page, transactional_db, settings, tmp_path):
    settings.CONCORD_TRAIN_CONFIG = tiny_config(tmp_path, epochs=2).to_dict()
    torch.set_num_threads(1)
    manager = factories.user("mo")
    project = factories.project(manager=manager, name="Shapes")
    ready_release(project, settings)

    log_in(page, "mo", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/models/")
    page.click("button:has-text('Train now')")
    card = page.locator("[data-model]")
    card.wait_for()
    assert card.get_attribute("data-status") == "queued"
    assert card.locator("progress").count() == 1

    # No worker in this test: train here, as the training queue's worker would.
    version = ModelVersion.objects.get(project=project)
    services.model_train(version_id=version.pk)
    # The card polls while queued, and the page reloads itself once the run has ended.
    page.locator("[data-model][data-status=ready]").wait_for(timeout=20_000)
    ready = page.locator("[data-model][data-status=ready]")
    assert ready.get_attribute("data-promoted") is not None
    assert ready.locator("tr[data-split=test]").count() == 1
    assert ready.locator("[data-threshold]").count() == 1
    for cell in ("tp", "fp", "fn", "tn"):
        assert ready.locator(f".confusion[data-split=test] [data-cell={cell}]").count() == 1
    assert page.locator("[data-chart]").count() >= 4  # metrics over versions
    assert ready.locator("details.curves [data-chart]").count() >= 1  # training curves
