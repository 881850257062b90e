from annotate.models import ChallengeMark, ChallengeOption, Judgment
from datasets.ingest.services.uploads import caption_create
from datasets.models import Source
from tests import factories
from tests.e2e.conftest import log_in
from training.negatives.services import challenges, proposals


def test_annotator_answers_a_challenge_by_keyboard(page, transactional_db):
    manager = factories.user("boss")
    annotator = factories.user("ann")
    project = factories.project(
        manager=manager,
        name="Challenges",
        gold_rate=0,
        challenge_rate=1.0,
        trusted_sources=[Source.COCO],
        negatives_random_per_image=3,
        negatives_text_edit_per_image=0,
    )
    factories.member(project=project, user=annotator, role="annotator")
    for seed in range(4):
        image = factories.image(project=project, seed=seed)
        caption_create(image=image, text=f"Scene {seed} with things in it", source=Source.COCO)
    proposals.random_propose(project=project, seed=0)
    challenges.challenges_open(project=project, seed=0)

    log_in(page, "ann", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/annotate/")
    lease = page.get_attribute("[data-task-kind=challenge]", "data-lease")
    boxes = page.locator("input[name=marked]")
    assert boxes.count() == 4
    ids = [int(boxes.nth(i).get_attribute("value")) for i in range(4)]
    page.locator("body").focus()
    page.keyboard.press("1")
    page.keyboard.press("3")
    page.keyboard.press("3")  # toggled off again
    page.keyboard.press("4")
    assert [boxes.nth(i).is_checked() for i in range(4)] == [True, False, False, True]
    page.keyboard.press("Enter")
    page.wait_for_function(f"!document.querySelector('[data-lease=\"{lease}\"]')")
    # The next challenge came in place, without a page load.
    assert page.locator("[data-task-kind=challenge]").count() == 1

    judgment = Judgment.objects.get(lease_id=lease, annotator=annotator)
    marked = set(
        ChallengeMark.objects.filter(judgment=judgment, marked=True).values_list(
            "option_id", flat=True
        )
    )
    assert marked == {ids[0], ids[3]}
    check = ChallengeOption.objects.get(task=judgment.task, is_check=True)
    assert judgment.gold_correct == (check.pk in marked)
    page.screenshot(path="/tmp/challenge.png")
