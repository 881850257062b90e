"""Issue 15: the annotator's screen on a slow or absent network, and a manager deciding a pair
judged only through challenge items.

The network is slowed with Chromium's own emulation (DevTools' Network.emulateNetworkConditions:
every request waits), and cut with Playwright's context.set_offline."""

import re

from annotate.agreement.services.consensus import consensus_recompute
from annotate.models import ChallengeOption, ItemLabel, Judgment, Task, TaskKind
from annotate.queue.services.judgments import judgment_submit
from annotate.queue.services.leases import assignment_get
from annotate.queue.services.pool import tasks_open
from datasets.ingest.services.uploads import caption_create
from datasets.models import Caption, Pair, PairKind
from tests import factories
from tests.e2e.conftest import log_in

FIRST = "a small red square beside a tree"
SECOND = "A black triangle above a green circle"


def _caption_project(images: int):
    manager = factories.user("boss")
    annotator = factories.user("ann")
    project = factories.project(manager=manager, name="Network", captions_per_image=1, gold_rate=0)
    factories.member(project=project, user=annotator, role="annotator")
    for seed in range(images):
        factories.image(project=project, seed=seed)
    tasks_open(project=project)
    return project, annotator


def _slow_network(page, latency_ms: int):
    session = page.context.new_cdp_session(page)
    session.send("Network.enable")
    session.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": latency_ms,
            "downloadThroughput": -1,
            "uploadThroughput": -1,
        },
    )


def test_text_typed_while_a_caption_is_on_its_way_is_never_lost_or_cut(page, transactional_db):
    project, annotator = _caption_project(images=2)
    log_in(page, "ann", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/annotate/")
    first_lease = page.get_attribute("[data-task-kind=caption]", "data-lease")
    _slow_network(page, latency_ms=1200)
    page.locator("textarea").focus()
    page.keyboard.type(FIRST)
    page.keyboard.press("Enter")
    # The annotator goes straight on with the next caption, while the first is on its way and
    # while the next task's page lands (about 2.4 s in, at 60 ms a key).
    page.keyboard.type(SECOND, delay=60)
    page.wait_for_function(
        f"!document.querySelector('[data-lease=\"{first_lease}\"]')", timeout=15_000
    )
    assert page.input_value("textarea") == SECOND
    page.keyboard.press("Enter")
    page.wait_for_function("!document.querySelector('[data-task-kind]')", timeout=15_000)
    assert sorted(Caption.objects.filter(author=annotator).values_list("text", flat=True)) == [
        SECOND,
        FIRST,
    ]


def test_an_answer_sent_offline_says_so_and_is_retried(page, transactional_db):
    project, annotator = _caption_project(images=1)
    for seed in range(10, 12):
        caption_create(
            image=factories.image(project=project, seed=seed), text=f"scene {seed}", source="api"
        )
    tasks_open(project=project)
    log_in(page, "ann", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/annotate/")
    status = page.locator("[data-send-status]")
    while page.locator("[data-task-kind]").count():
        kind = page.get_attribute("[data-task-kind]", "data-task-kind")
        lease = page.get_attribute("[data-task-kind]", "data-lease")
        page.context.set_offline(True)
        if kind == "caption":
            page.locator("textarea").focus()
            page.keyboard.type(FIRST)
            page.keyboard.press("Enter")
        else:
            page.locator("body").focus()
            page.keyboard.press("1")
        status.wait_for(state="visible")
        assert re.search(r"Not sent, retrying in \d+ s", status.text_content())
        if kind == "caption":  # the box emptied for the next caption; this one is still shown
            assert FIRST in status.text_content() and page.input_value("textarea") == ""
        assert page.get_attribute("[data-task-kind]", "data-lease") == lease
        assert not Judgment.objects.filter(lease_id=lease).exists()
        page.wait_for_timeout(1500)  # one retry fails too
        assert "Not sent" in status.text_content()
        page.context.set_offline(False)
        page.wait_for_function(
            f"!document.querySelector('[data-lease=\"{lease}\"]')", timeout=20_000
        )
        assert "Saved." in page.content()
        judgment = Judgment.objects.get(lease_id=lease)
        assert judgment.answer == ("caption" if kind == "caption" else "match")
        if kind == "caption":
            assert judgment.caption.text == FIRST
    assert Judgment.objects.filter(annotator=annotator).count() == 3


def test_undo_of_a_written_caption_brings_the_text_back(page, transactional_db):
    project, _ = _caption_project(images=2)
    log_in(page, "ann", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/annotate/")
    lease = page.get_attribute("[data-task-kind=caption]", "data-lease")
    page.locator("textarea").focus()
    page.keyboard.type(FIRST)
    page.keyboard.press("Enter")
    page.wait_for_function(f"!document.querySelector('[data-lease=\"{lease}\"]')")
    page.click("form.undo button")  # the key z does the same, outside a caption box
    page.wait_for_selector(f'[data-lease="{lease}"]')
    assert page.input_value("textarea") == FIRST
    assert not Judgment.objects.exists()


def test_a_manager_decides_a_pair_judged_only_in_challenges(page, transactional_db):
    manager = factories.user("boss")
    project = factories.project(
        manager=manager, name="Hard", judgments_per_item=2, max_judgments_per_item=2, gold_rate=0
    )
    image = factories.image(project=project, seed=3)
    caption_create(image=image, text="a red circle above a blue square", source="api")
    positive = Pair.objects.get(image=image)
    other = factories.image(project=project, seed=4)
    caption_create(image=other, text="two green triangles side by side", source="api")
    proposal = Pair.objects.create(
        image=image, caption=other.captions.get(), kind=PairKind.TEXT_EDIT_NEGATIVE
    )
    task = Task.objects.create(
        project=project,
        kind=TaskKind.CHALLENGE,
        image=image,
        pair=positive,
        target=2,
        random_key=1,
    )
    check, option = ChallengeOption.objects.bulk_create(
        [
            ChallengeOption(task=task, pair=positive, position=0, is_check=True),
            ChallengeOption(task=task, pair=proposal, position=1),
        ]
    )
    for number, marked in enumerate(([check.pk, option.pk], [check.pk])):
        user = factories.user(f"crowd{number}")
        factories.member(project=project, user=user, role="annotator")
        lease = assignment_get(project=project, annotator=user, lookahead=0).current
        assert lease.task_id == task.pk
        judgment_submit(lease=lease, answer="challenge", marked=marked)
    consensus_recompute(project=project)

    log_in(page, "boss", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/agreement/disputed/")
    item = page.locator(f'[data-pair="{proposal.pk}"]')
    assert "two green triangles side by side" in item.text_content()
    assert item.locator("text=in a challenge item").count() == 2
    assert "waiting for you" in item.text_content()
    item.locator("button[value='0']").click()
    page.wait_for_selector("text=Decided.")
    assert page.locator(f'[data-pair="{proposal.pk}"]').count() == 0
    assert ItemLabel.objects.get(pair=proposal).adjudicated_label == 0
    page.goto(f"/projects/{project.slug}/agreement/disputed/?state=adjudicated")
    assert page.locator(f'[data-pair="{proposal.pk}"]').count() == 1


def test_letters_typed_on_after_the_next_task_is_a_pair_are_kept_not_answers(
    page, transactional_db
):
    project, annotator = _caption_project(images=1)
    caption_create(image=factories.image(project=project, seed=20), text="scene 20", source="api")
    tasks_open(project=project)
    Task.objects.filter(project=project, kind=TaskKind.CAPTION).update(random_key=0)
    Task.objects.filter(project=project, kind=TaskKind.VERIFY).update(random_key=10**6)
    log_in(page, "ann", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/annotate/")
    assert page.get_attribute("[data-task-kind]", "data-task-kind") == "caption"
    _slow_network(page, latency_ms=1200)
    page.locator("textarea").focus()
    page.keyboard.type(FIRST)
    page.keyboard.press("Enter")
    page.keyboard.type("now a second one, no need", delay=150)  # n, y, 1...: never answers
    page.wait_for_selector("[data-task-kind=verify]")
    kept = page.locator("[data-kept-typing] q")
    assert kept.text_content() == "now a second one, no need"
    assert Judgment.objects.filter(annotator=annotator).count() == 1  # the caption only
