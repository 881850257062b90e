"""No page scrolls sideways: the image detail at a laptop's 1280 px, and every page behind the
manager's project tabs (the data browser's Pairs page and a release page among them) at a phone's
390 px, with the long things real data brings: captions of many words and of one unbroken
token, file names and URLs hundreds of characters long, a long project name, all ten tabs; and
the release page's file table at 390 px wraps its names, sizes and hashes only between words."""

from annotate.models import ItemLabel
from datasets.ingest.services.uploads import Provenance, caption_create, image_ingest
from datasets.models import Pair, Source
from datasets.releases import services as releases
from tests import factories
from tests.e2e.conftest import log_in

LONG_NAME = "holiday_" + "x" * 180 + "_IMG_20240101_120000_final_final_v2.jpg"
LONG_URL = (
    "https://images.example.org/collections/2024/" + "deep/" * 60 + "IMG_0001.jpg?sig=" + "a" * 120
)
LONG_LICENCE = "https://creativecommons.org/licenses/by-nc-sa/4.0/legalcode/" + "section/" * 20
LONG_WORDS = " ".join(["A very long caption about a dog running across a wide green field"] * 12)
LONG_TOKEN = "A" + "aaaaaaaaaa" * 40 + "h, a caption pasted without spaces"


def _overflow(page) -> dict:
    """What sticks out: the document's scroll width against the window's, and the widest
    element's tag and class when it is too wide (so a failure names the culprit)."""
    return page.evaluate(
        """() => {
          const width = window.innerWidth;
          let culprit = null;
          for (const el of document.body.querySelectorAll('*')) {
            const box = el.getBoundingClientRect();
            if (box.right > width + 0.5 && (!culprit || box.right > culprit.right)) {
              culprit = {right: Math.round(box.right), tag: el.tagName, cls: el.className};
            }
          }
          return {scroll: document.documentElement.scrollWidth, inner: width, culprit};
        }"""
    )


def _words_cut(page, selector: str) -> list:
    """Cells (``selector``) whose text wraps inside a word, or sticks out of the cell: each line
    break must fall at a space or at a <wbr> the page put there. Found character by character
    from where the browser laid each one out (a Range's client rects)."""
    return page.evaluate(
        r"""(selector) => {
          const cut = [];
          for (const cell of document.querySelectorAll(selector)) {
            const walker = document.createTreeWalker(
              cell, NodeFilter.SHOW_TEXT | NodeFilter.SHOW_ELEMENT);
            let top = null, before = '', wbr = false, node;
            while ((node = walker.nextNode())) {
              if (node.nodeType === Node.ELEMENT_NODE) {
                if (node.tagName === 'WBR') wbr = true;
                continue;
              }
              const text = node.textContent;
              for (let i = 0; i < text.length; i++) {
                const range = document.createRange();
                range.setStart(node, i);
                range.setEnd(node, i + 1);
                const rects = range.getClientRects();
                if (!rects.length) continue;
                const here = rects[0].top;
                const spaced = /\s/.test(before) || /\s/.test(text[i]);
                if (top !== null && here > top + 2 && !wbr && !spaced) {
                  cut.push(cell.textContent.slice(0, 80) + ' (before "' + text.slice(i, i + 8) + '")');
                }
                top = here;
                before = text[i];
                wbr = false;
              }
            }
            if (cell.scrollWidth > cell.clientWidth + 1) {
              cut.push(cell.textContent.slice(0, 80) + ' (sticks out of its cell)');
            }
          }
          return cut;
        }""",
        selector,
    )


def _too_wide(page, path: str) -> list:
    page.goto(path)
    measured = _overflow(page)
    return [] if measured["scroll"] <= measured["inner"] else [(path, measured)]


def test_pages_fit_the_window_with_long_content(browser, live_server, transactional_db):
    manager = factories.user("rita_" + "m" * 40)
    project = factories.project(
        manager=manager, name="Flickr captions, second round, " + "long project name " * 6
    )
    result = image_ingest(
        project=project,
        data=factories.image_bytes(seed=1, size=(1600, 1200)),
        provenance=Provenance(
            source=Source.URL,
            original_name=LONG_NAME,
            source_url=LONG_URL,
            license_name="",
            license_url=LONG_LICENCE,
        ),
        uploaded_by=manager,
    )
    image = project.images.get(pk=result.image_id)
    for text in (LONG_WORDS, LONG_TOKEN, "A dog."):
        caption = caption_create(image=image, text=text, source="api")
        ItemLabel.objects.create(
            project=project,
            pair=Pair.objects.get(caption=caption),
            label=1,
            confidence=0.9,
            judgments=3,
            status="agreed",
        )
    options = releases.release_options(project=project, formats=["jsonl"], copy_images=True)
    release = releases.release_request(project=project, user=manager, options=options)
    release = releases.release_build(release_id=release.pk)
    assert release.status == "ready", release.error

    too_wide, cut = [], []
    for width, paths in (
        (
            1280,
            [
                f"/projects/{project.slug}/images/{image.pk}/",
                # QA: the head action (Mine now, Train now) stuck out past the content box.
                f"/projects/{project.slug}/models/",
                f"/projects/{project.slug}/negatives/",
            ],
        ),
        (
            390,
            [
                f"/projects/{project.slug}/",
                f"/projects/{project.slug}/images/",
                f"/projects/{project.slug}/images/{image.pk}/",
                f"/projects/{project.slug}/pairs/",
                f"/projects/{project.slug}/pairs/?q=" + "dog%20" * 30,
                f"/projects/{project.slug}/upload/",
                f"/projects/{project.slug}/duplicates/",
                f"/projects/{project.slug}/agreement/",
                f"/projects/{project.slug}/agreement/disputed/",
                f"/projects/{project.slug}/quality/",
                f"/projects/{project.slug}/releases/",
                f"/projects/{project.slug}/releases/v{release.version}/",
                f"/projects/{project.slug}/models/",
                f"/projects/{project.slug}/negatives/",
                f"/projects/{project.slug}/members/",
                f"/projects/{project.slug}/settings/",
            ],
        ),
    ):
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": width, "height": 900}, bypass_csp=True
        )
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            log_in(page, manager.username, factories.PASSWORD)
            for path in paths:
                too_wide += _too_wide(page, path)
            if width == 390:
                # All ten tabs are there (wrapped, not cut off).
                page.goto(f"/projects/{project.slug}/pairs/")
                assert page.locator(".crumbs .tabs a").count() == 10
                # The release's file table: names, sizes and hashes readable, no word cut
                # ("pairs.jso|nl", "byt|es"), the content-named image included.
                page.goto(f"/projects/{project.slug}/releases/v{release.version}/")
                page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
                cells = page.locator("table.files td")
                assert cells.count() >= 3 * 3
                assert any(len(t) > 64 for t in cells.all_text_contents())  # images/…/<hash>.jpg
                cut += _words_cut(page, "table.files td")
                # The datasheet's tables of words and counts: never "sp|lit" or "45|0".
                assert page.locator(".datasheet td").count() >= 4
                cut += _words_cut(page, ".datasheet td, .datasheet th")
            else:
                # The release page's head buttons are one line each at a desktop width.
                page.goto(f"/projects/{project.slug}/releases/v{release.version}/")
                for selector in ("[data-pin]", ".page-head .actions a.button"):
                    lines = page.eval_on_selector(
                        selector,
                        """(el) => {
                          const range = document.createRange();
                          range.selectNodeContents(el);
                          return new Set([...range.getClientRects()].map(r => Math.round(r.top)))
                            .size;
                        }""",
                    )
                    assert lines == 1, f"{selector} wraps onto {lines} lines at {width} px"
        finally:
            context.close()
    assert not too_wide, "\n".join(f"{path}: {measured}" for path, measured in too_wide)
    assert not cut, "\n".join(cut)
