"""The caption box's live check in a real browser, over captions in many scripts: the page shows
exactly the server's verdict (the one submitting gives), and a Chinese caption is accepted."""

from annotate.queue.caption_rules import caption_check
from annotate.queue.services.judgments import caption_rules_for
from annotate.queue.services.pool import tasks_open
from datasets.ingest.services.uploads import caption_create
from datasets.models import Caption
from tests import factories
from tests.e2e.conftest import log_in
from tests.multilingual import CAPTIONS, TOO_SHORT

EXISTING = "一只猫在沙发上睡觉。"
OTHERS = (
    "这是一只狗在海滩上玩",  # banned opening
    "一只猫在沙发上睡觉",  # repeats the image's caption, without its full stop
    "There is a dog",  # banned opening and too short
    "狗在跑" * 14,  # too long: 42 characters
    "",
)


def _shown(page) -> list[str]:
    page.wait_for_function(
        "['ok', 'problems'].includes(document.querySelector('[data-feedback]').dataset.checked)"
    )
    return page.locator("[data-feedback] li").all_inner_texts()


def _reset(page) -> None:
    page.evaluate("document.querySelector('[data-feedback]').dataset.checked = ''")


def test_live_check_shows_the_servers_verdict_in_every_script(page, transactional_db):
    manager = factories.user("boss")
    annotator = factories.user("ann")
    project = factories.project(
        manager=manager,
        name="多语言",
        language="zh",
        captions_per_image=2,
        caption_banned_openings="There is\n这是",
    )
    factories.member(project=project, user=annotator, role="annotator")
    image = factories.image(project=project)
    tasks_open(project=project)
    caption_create(image=image, text=EXISTING, source="api")
    rules = caption_rules_for(project)

    log_in(page, "ann", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/annotate/")
    box = page.locator("textarea[data-caption-input]")
    assert box.get_attribute("lang") == "zh" and box.get_attribute("dir") == "auto"

    texts = [s.text for s in CAPTIONS + TOO_SHORT] + list(OTHERS)
    disagreements = []
    for text in texts:
        _reset(page)
        box.fill(text)
        expected = caption_check(text, rules=rules, existing=[EXISTING])
        wanted = expected.problems or [expected.summary]
        if _shown(page) != wanted:
            disagreements.append((text, _shown(page), wanted))
    assert disagreements == []

    # Typed key by key, the answers to the partial texts never overwrite the last one.
    _reset(page)
    box.fill("")
    box.press_sequentially("两只狗在海滩上玩红色的球", delay=30)
    assert _shown(page) == ["12 characters ✓"]
    box.press("Enter")
    page.wait_for_function("!document.querySelector('textarea[data-caption-input]')")
    assert Caption.objects.filter(author=annotator).get().text == "两只狗在海滩上玩红色的球"


def test_enter_while_an_input_method_composes_does_not_submit(page, transactional_db):
    """Japanese and Chinese typists confirm a conversion with Enter: that Enter belongs to the
    input method (keyCode 229, isComposing), not to the caption form."""
    manager = factories.user("boss")
    annotator = factories.user("ann")
    project = factories.project(manager=manager, name="日本語", language="ja")
    factories.member(project=project, user=annotator, role="annotator")
    factories.image(project=project)
    tasks_open(project=project)

    log_in(page, "ann", factories.PASSWORD)
    page.goto(f"/projects/{project.slug}/annotate/")
    box = page.locator("textarea[data-caption-input]")
    box.fill("浜辺で遊ぶ二匹の犬と")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.imeSetComposition", {"text": "いぬ", "selectionStart": 2, "selectionEnd": 2})
    box.evaluate(
        "e => e.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', code: 'Enter',"
        " keyCode: 229, isComposing: true, bubbles: true, cancelable: true}))"
    )
    page.wait_for_timeout(800)
    assert page.locator("textarea[data-caption-input]").count() == 1
    assert not Caption.objects.filter(author=annotator).exists()

    # The conversion confirmed, a plain Enter submits the whole caption.
    cdp.send("Input.insertText", {"text": "赤いボール"})
    box.press("Enter")
    page.wait_for_function("!document.querySelector('textarea[data-caption-input]')")
    assert Caption.objects.filter(author=annotator).get().text.endswith("赤いボール")
