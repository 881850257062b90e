"""The annotator's caption rules in every script, and the live check that asks the server."""

import pytest
from django.urls import reverse

from annotate.models import Judgment
from annotate.queue.caption_rules import (
    BANNED_OPENING,
    REPEATED_CAPTION,
    TOO_FEW_WORDS,
    TOO_MANY_WORDS,
    CaptionRules,
    caption_check,
    caption_violations,
)
from annotate.queue.services.pool import tasks_open
from datasets.ingest.services.uploads import caption_create
from tests import factories
from tests.multilingual import CAPTIONS

RULES = CaptionRules(
    min_words=4,
    max_words=40,
    banned_openings=("There is", "This is", "这是", "これは", "Das ist"),
)


@pytest.mark.parametrize("sample", CAPTIONS, ids=lambda s: f"{s.language}:{s.text}")
def test_real_captions_in_every_script_pass(sample):
    check = caption_check(sample.text, rules=RULES, existing=[])

    assert check.problems == []
    assert check.summary.endswith("✓")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("两只狗", TOO_FEW_WORDS.format(minimum=4, unit="characters", count=3)),
        ("犬が走る", TOO_FEW_WORDS.format(minimum=8, unit="characters", count=4)),
        ("สุนัขวิ่ง", TOO_FEW_WORDS.format(minimum=12, unit="characters", count=5)),
        ("कुत्ता दौड़ रहा", TOO_FEW_WORDS.format(minimum=4, unit="words", count=3)),
        ("개가 달린다", TOO_FEW_WORDS.format(minimum=4, unit="words", count=2)),
        ("狗在跑" * 14, TOO_MANY_WORDS.format(maximum=40, unit="characters", count=42)),
        ("犬が走る" * 21, TOO_MANY_WORDS.format(maximum=80, unit="characters", count=84)),
    ],
)
def test_lengths_are_counted_in_the_captions_own_unit(text, problem):
    assert caption_violations(text, rules=RULES, existing=[]) == [problem]


def test_counts_agree_with_the_message_unit():
    assert caption_check("两只狗在海滩上玩", rules=RULES, existing=[]).summary == "8 characters ✓"
    assert caption_check("Zwei Hunde spielen am Strand", rules=RULES, existing=[]).summary == (
        "5 words ✓"
    )
    # Latin letters inside Chinese: a word counts as one character's worth.
    assert caption_check("穿T恤的男孩", rules=RULES, existing=[]).summary == "6 characters ✓"


@pytest.mark.parametrize(
    ("text", "opening"),
    [
        ("这是一只在海滩上的狗", "这是"),
        ("これは浜辺の犬です", "これは"),
        ("Das ist ein Hund am Strand", "Das ist"),
        ("There is a dog on the beach", "There is"),
    ],
)
def test_banned_openings_in_every_script(text, opening):
    assert caption_violations(text, rules=RULES, existing=[]) == [
        BANNED_OPENING.format(opening=opening)
    ]


def test_an_opening_must_end_on_a_word_boundary():
    assert caption_violations("Thereisn't a dog on the beach", rules=RULES, existing=[]) == []
    assert caption_violations("Das isthmus ist ein Landstreifen", rules=RULES, existing=[]) == []


def test_repeats_are_found_across_punctuation_and_width():
    existing = ["一只狗在草地上跑。", "ＡＢＣの犬が浜辺を走る"]

    assert caption_violations("一只狗在草地上跑", rules=RULES, existing=existing) == [
        REPEATED_CAPTION
    ]
    assert caption_violations("abcの犬が浜辺を走る。", rules=RULES, existing=existing) == [
        REPEATED_CAPTION
    ]


# --- the live check: the server's verdict as the page asks for it ----------------------------


@pytest.fixture
def caption_lease(client, project, annotator):
    project.captions_per_image = 2
    project.caption_banned_openings = "There is\n这是"
    project.save()
    image = factories.image(project=project)
    tasks_open(project=project)  # one caption task; the caption below gets no task of its own
    caption_create(image=image, text="一只猫在沙发上睡觉。", source="api")
    client.force_login(annotator)
    return client.get(reverse("annotate", kwargs={"slug": project.slug})).context["lease"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "ok"),
    [(sample.text, True) for sample in CAPTIONS]
    + [("两只狗", False), ("这是一只狗在海滩上", False), ("一只猫在沙发上睡觉", False)]
    # A NUL the database cannot store: refused by both, never a ✓ beside it.
    + [("两只狗在海滩上玩红色\x00的球", False)],
)
def test_the_check_endpoint_gives_the_verdict_submitting_gives(
    client, project, caption_lease, text, ok
):
    check_url = reverse(
        "annotate-check", kwargs={"slug": project.slug, "lease_id": caption_lease.pk}
    )
    response = client.post(check_url, {"caption_text": text})
    verdict = response.json()
    submitted = client.post(
        reverse("annotate-submit", kwargs={"slug": project.slug, "lease_id": caption_lease.pk}),
        {"answer": "caption", "caption_text": text},
    )

    assert verdict["ok"] is ok
    if ok:
        assert verdict["problems"] == [] and verdict["summary"].endswith("✓")
        assert submitted.status_code == 302
        assert Judgment.objects.get().caption.text == text
    else:
        assert verdict["summary"] == ""
        assert submitted.context["problems"] == verdict["problems"]
        assert not Judgment.objects.exists()


@pytest.mark.django_db
def test_the_check_endpoint_is_only_for_the_lease_holder(client, project, caption_lease):
    other = factories.user("someone-else")
    factories.member(project=project, user=other, role="annotator")
    client.force_login(other)
    url = reverse("annotate-check", kwargs={"slug": project.slug, "lease_id": caption_lease.pk})

    assert client.post(url, {"caption_text": "两只狗"}).status_code == 404
    assert client.get(url).status_code == 405


@pytest.mark.django_db
def test_an_overlong_caption_is_refused_by_check_and_submit_alike(
    client, project, caption_lease, settings
):
    settings.CONCORD_MAX_CAPTION_CHARS = 50
    text = "Ein " + "sehr" * 20 + " langer Satz über einen Hund"  # 5 words, 107 characters
    kwargs = {"slug": project.slug, "lease_id": caption_lease.pk}

    verdict = client.post(reverse("annotate-check", kwargs=kwargs), {"caption_text": text}).json()
    submitted = client.post(
        reverse("annotate-submit", kwargs=kwargs), {"answer": "caption", "caption_text": text}
    )

    assert verdict["problems"] == ["Caption is longer than 50 characters."]
    assert submitted.status_code == 200 and submitted.context["problems"] == verdict["problems"]
    assert not Judgment.objects.exists()
