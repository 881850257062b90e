from annotate.models import Judgment, Task
from annotate.queue.services.pool import gold_set, tasks_open
from datasets.ingest.services.uploads import caption_create
from datasets.models import Caption
from tests import factories
from tests.e2e.conftest import log_in


def test_annotator_works_by_keyboard_and_a_reload_loses_nothing(page, transactional_db):
    manager = factories.user("boss")
    annotator = factories.user("ann")
    project = factories.project(
        manager=manager, name="Journey", captions_per_image=1, gold_rate=0.5
    )
    factories.member(project=project, user=annotator, role="annotator")
    for seed in range(2):  # two images that need a caption each
        factories.image(project=project, seed=seed)
    for seed in range(10, 14):  # four captioned images: three to verify, one gold
        caption_create(
            image=factories.image(project=project, seed=seed), text=f"scene {seed}", source="api"
        )
    tasks_open(project=project)
    gold = Task.objects.get(pair__caption__text="scene 13")
    gold_set(pair=gold.pair, answer="no_match")

    captions = iter(["a small red square beside a tree", "two blue circles on a white table"])
    log_in(page, "ann", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/annotate/")
    done = {"caption": 0, "verify": 0}
    reloaded = False
    while page.locator("[data-task-kind]").count():
        lease = page.get_attribute("[data-task-kind]", "data-lease")
        kind = page.get_attribute("[data-task-kind]", "data-task-kind")
        task = Task.objects.get(leases__pk=lease)
        if task.is_gold:
            source = page.content().lower()
            assert "gold" not in source and "scene 13" in source
        if done["verify"] == 1 and not reloaded:
            page.reload()
            assert page.get_attribute("[data-task-kind]", "data-lease") == lease
            assert Judgment.objects.filter(annotator=annotator).count() == sum(done.values())
            reloaded = True
        if kind == "caption":
            page.locator("textarea").focus()
            page.keyboard.type(next(captions))
            page.keyboard.press("Enter")
        else:
            page.locator("body").focus()
            page.keyboard.press("2" if task.is_gold else "1")
        page.wait_for_function(
            f"!document.querySelector('[data-lease=\"{lease}\"]')", timeout=10_000
        )
        done["caption" if kind == "caption" else "verify"] += 1
    assert "Nothing to do right now" in page.content()
    assert reloaded

    assert done["caption"] == 2 and done["verify"] in (3, 4)  # 4 when the gold item came up
    judgments = Judgment.objects.filter(annotator=annotator)
    assert judgments.count() == sum(done.values())
    assert judgments.values("task").distinct().count() == judgments.count()
    written = Caption.objects.filter(author=annotator).order_by("text")
    assert list(written.values_list("text", flat=True)) == [
        "a small red square beside a tree",
        "two blue circles on a white table",
    ]
    if judgments.filter(task=gold).exists():
        assert judgments.get(task=gold).gold_correct is True
