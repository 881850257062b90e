"""Every filter and sort of the data browser on a real database (run on SQLite and PostgreSQL:
full-text search there, substrings here)."""

import pytest

from annotate.queue.services.pool import gold_set
from datasets.browse import selectors
from datasets.browse.filters import FilterError, filter_parse

pytestmark = pytest.mark.django_db


def names(world, **params) -> set[str]:
    spec = filter_parse(params)
    found = set(
        selectors.pairs_filtered(project=world.project, spec=spec).values_list("pk", flat=True)
    )
    by_id = {getattr(world, n).pk: n for n in ("p0", "p1", "p2", "p2b", "p3", "pn")}
    return {by_id[i] for i in found}


ALL = {"p0", "p1", "p2", "p2b", "p3", "pn"}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ALL),
        ({"q": "black"}, {"p0", "p2", "pn"}),
        ({"q": "black cat"}, {"p0", "pn"}),
        ({"q": "Snow"}, {"p2", "p2b"}),
        ({"q": "zebra"}, set()),
        ({"label": "match"}, {"p0", "p3"}),
        ({"label": "no_match"}, {"p1", "pn"}),
        ({"label": "none"}, {"p2", "p2b"}),
        ({"status": "agreed"}, {"p0"}),
        ({"status": "waiting"}, {"p1"}),
        ({"status": "pending"}, {"p2"}),
        ({"status": "disputed"}, {"p1"}),
        ({"status": "unjudged"}, {"p2b", "p3", "pn"}),
        ({"status": "adjudicated"}, set()),
        ({"confidence_min": "0.75"}, {"p0", "p3"}),
        ({"confidence_min": "0.6", "confidence_max": "0.7"}, {"p1", "pn"}),
        ({"agreement_max": "0.6"}, {"p1"}),
        ({"flagged": "yes"}, {"p1"}),
        ({"flagged": "no"}, ALL - {"p1"}),
        ({"duplicate": "unique"}, {"p0", "p1"}),
        ({"duplicate": "canonical"}, {"p2", "p2b"}),
        ({"duplicate": "duplicate"}, {"p3", "pn"}),
        ({"split": "train"}, {"p0"}),
        ({"split": "none"}, ALL - {"p0", "p1"}),
        ({"source": "coco"}, {"p3", "pn"}),
        ({"license": "CC BY 4.0"}, {"p0"}),
        ({"license": "none"}, ALL - {"p0"}),
        ({"captions_min": "2"}, {"p2", "p2b"}),
        ({"captions_max": "1"}, ALL - {"p2", "p2b"}),
        ({"annotator": "annotator"}, {"p0", "p1"}),
        ({"kind": "random_negative"}, {"pn"}),
        ({"score_min": "0.85"}, {"pn"}),
        ({"disagree": "yes"}, {"pn"}),
        ({"disagree": "no"}, {"p3"}),
        ({"excluded": "yes"}, set()),
        ({"label": "match", "duplicate": "duplicate", "q": "red"}, {"p3"}),
    ],
)
def test_each_filter_selects_exactly_its_pairs(world, params, expected):
    assert names(world, **params) == expected


def test_gold_selects_the_gold_items(world):
    gold_set(pair=world.p3, answer="match")
    assert names(world, gold="yes") == {"p3"}
    assert names(world, gold="no") == ALL - {"p3"}
    assert names(world, gold="yes", label="no_match") == set()
    grid = selectors.images_page(
        project=world.project, spec=filter_parse({"gold": "yes"}, images=True), limit=10
    )
    assert [i.pk for i in grid.images] == [world.p3.image_id]


def test_an_unknown_annotator_is_a_filter_error(world, outsider):
    for name in ("nobody", "outsider"):  # not a member: no leak of who exists
        with pytest.raises(FilterError) as caught:
            names(world, annotator=name)
        assert caught.value.message == selectors.NO_SUCH_ANNOTATOR


@pytest.mark.parametrize(
    "sort", ["-id", "id", "confidence", "-confidence", "agreement", "-agreement", "score", "-score"]
)
def test_keyset_pages_walk_every_row_once_in_order(world, sort):
    column = {
        "id": lambda p: p.pk,
        "confidence": lambda p: p.confidence,
        "agreement": lambda p: getattr(getattr(p, "item_label", None), "mv_share", None),
        "score": lambda p: getattr(getattr(p, "proposal", None), "score", None),
    }[sort.lstrip("-")]
    from datasets.models import Pair

    pairs = list(
        Pair.objects.filter(image__project=world.project).select_related("item_label", "proposal")
    )
    having = [p for p in pairs if column(p) is not None]
    descending = sort.startswith("-")
    expected = [p.pk for p in sorted(having, key=lambda p: (column(p), p.pk), reverse=descending)]
    seen, spec, pages = [], filter_parse({"sort": sort}), 0
    while True:
        page = selectors.pairs_page(project=world.project, spec=spec, limit=2)
        seen += [p.pk for p in page.pairs]
        pages += 1
        if page.next_cursor is None:
            break
        spec = filter_parse({"sort": sort, "cursor": page.next_cursor.encode()})
    assert seen == expected
    assert pages == max(1, -(-len(expected) // 2))


def test_ties_in_the_sort_value_are_broken_by_id(world):
    from datasets.models import Pair

    Pair.objects.filter(image__project=world.project).update(confidence=0.5)
    spec, seen = filter_parse({"sort": "confidence"}), []
    while True:
        page = selectors.pairs_page(project=world.project, spec=spec, limit=4)
        seen += [p.pk for p in page.pairs]
        if page.next_cursor is None:
            break
        spec = filter_parse({"sort": "confidence", "cursor": page.next_cursor.encode()})
    assert seen == sorted(
        Pair.objects.filter(image__project=world.project).values_list("pk", flat=True)
    )


def test_image_grid_applies_image_and_pair_conditions(world):
    def grid(**params):
        spec = filter_parse(params, images=True)
        page = selectors.images_page(project=world.project, spec=spec, limit=10)
        return {world.images.index(i) for i in page.images}

    assert grid() == {0, 1, 2, 3}
    assert grid(q="snow") == {2}
    assert grid(captions_min="2") == {2}
    assert grid(flagged="yes") == {1}
    assert grid(duplicate="duplicate") == {3}
    assert grid(label="no_match") == {1, 3}  # image 3 through its negative pair
    assert grid(label="no_match", source="coco") == {3}
    assert grid(annotator="annotator") == {0, 1}


def test_image_grid_keyset_pages(world):
    spec, seen = filter_parse({"sort": "id"}, images=True), []
    while True:
        page = selectors.images_page(project=world.project, spec=spec, limit=3)
        seen += [i.pk for i in page.images]
        if page.next_cursor is None:
            break
        spec = filter_parse({"sort": "id", "cursor": page.next_cursor.encode()}, images=True)
    assert seen == sorted(i.pk for i in world.images)


@pytest.mark.parametrize("sort", ["-id", "id"])
@pytest.mark.parametrize(
    "params",
    [
        {"status": "unjudged"},
        {"status": "waiting"},
        {"agreement_min": "0.4"},
        {"disagree": "yes"},
        {"disagree": "no"},
        {"score_min": "0"},
        {"label": "no_match", "status": "unjudged"},
    ],
)
def test_filtered_pages_by_id_match_the_unpaged_filter(world, sort, params):
    # The cursor also bounds the label and proposal subqueries (selectors._id_bound).
    unpaged = sorted(
        selectors.pairs_filtered(project=world.project, spec=filter_parse(params)).values_list(
            "pk", flat=True
        ),
        reverse=sort == "-id",
    )
    spec, seen = filter_parse({**params, "sort": sort}), []
    while True:
        page = selectors.pairs_page(project=world.project, spec=spec, limit=1)
        seen += [p.pk for p in page.pairs]
        if page.next_cursor is None:
            break
        spec = filter_parse({**params, "sort": sort, "cursor": page.next_cursor.encode()})
    assert seen == unpaged and seen


@pytest.mark.parametrize(
    "params",
    [
        {"q": "black"},
        {"q": "black cat"},
        {"q": '"black cat"'},
        {"q": "Snow"},
        {"label": "match", "duplicate": "duplicate", "q": "red"},
        {"annotator": "annotator"},
        {"annotator": "annotator", "q": "black"},
        {"annotator": "annotator", "sort": "-confidence"},
        {"duplicate": "unique"},
        {"duplicate": "canonical"},
        {"duplicate": "duplicate", "sort": "-confidence"},
        {"gold": "yes"},
        {"gold": "no", "sort": "-confidence"},
    ],
)
def test_many_matches_select_what_few_do(world, monkeypatch, params):
    gold_set(pair=world.p3, answer="match")
    """A search matching more than SEARCH_IDS_MAX captions tests each pair's caption as it is
    walked, an annotator with more judgments is asked pair by pair, and a project with more
    duplicate cluster members or gold items asks EXISTS of each; with the limit at 0
    every view takes those paths and must select, page and grid exactly as with the lists."""

    def views():
        spec = filter_parse(params)
        grid_spec = filter_parse({k: v for k, v in params.items() if k != "sort"}, images=True)
        pages, page_spec = [], spec
        while True:
            page = selectors.pairs_page(project=world.project, spec=page_spec, limit=1)
            pages += [p.pk for p in page.pairs]
            if page.next_cursor is None:
                break
            page_spec = filter_parse({**params, "cursor": page.next_cursor.encode()})
        grid = selectors.images_page(project=world.project, spec=grid_spec, limit=10)
        return names(world, **params), pages, [i.pk for i in grid.images]

    with_lists = views()
    assert with_lists[0]  # each case selects something, so a path that drops rows shows
    monkeypatch.setattr(selectors, "SEARCH_IDS_MAX", 0)
    assert views() == with_lists


def test_a_pair_the_model_never_scored_neither_agrees_nor_disagrees(world):
    """Random and text-edit proposals have no score until a model exists: the model said
    nothing about them, so "disagrees" must not read the missing score as "no match"."""
    from training.negatives.models import Proposal, ProposalSource

    Proposal.objects.create(project=world.project, pair=world.p0, source=ProposalSource.RANDOM)
    Proposal.objects.create(project=world.project, pair=world.p1, source=ProposalSource.RANDOM)
    assert names(world, disagree="yes") == {"pn"}
    assert names(world, disagree="no") == {"p3"}


def test_every_source_of_the_model_can_be_filtered():
    from datasets.browse.filters import SOURCES
    from datasets.models import Source

    assert set(SOURCES) == set(Source.values)


@pytest.mark.parametrize(
    ("q", "texts"),
    [
        (
            "-red",
            {
                "A brown dog runs on green grass",
                "Two black dogs play in the snow",
                "Snow covers the quiet park",
            },
        ),
        ("black -red", {"Two black dogs play in the snow"}),
        ("-red -snow", {"A brown dog runs on green grass"}),
        ('"red bus"', {"A red bus waits at the stop"}),
        (
            '-"red bus"',
            {
                "A black cat sleeps on a red sofa",
                "A brown dog runs on green grass",
                "Two black dogs play in the snow",
                "Snow covers the quiet park",
            },
        ),
        (
            "-do",
            {  # a whole word only: "dog" has no word "do"
                "A black cat sleeps on a red sofa",
                "A brown dog runs on green grass",
                "Two black dogs play in the snow",
                "A red bus waits at the stop",
                "Snow covers the quiet park",
            },
        ),
    ],
)
def test_search_exclusions_agree_on_every_database(world, q, texts):
    # PostgreSQL's websearch_to_tsquery reads -word as NOT; the SQLite fallback found nothing.
    spec = filter_parse({"q": q})
    found = selectors.pairs_filtered(project=world.project, spec=spec)
    assert {p.caption.text for p in found} == texts


def test_search_terms_read_words_phrases_and_exclusions():
    from datasets.browse.filters import search_terms

    assert search_terms('circle -red "a b"  -"c  d" - ""') == (["circle", "a b"], ["red", "c d"])
    assert search_terms('"unclosed phrase') == (["unclosed phrase"], [])
