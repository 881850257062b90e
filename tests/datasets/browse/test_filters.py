"""The data browser's filter spec: parsing, validation and canonical URLs (pure, no database)."""

import base64
import json

import pytest

from datasets.browse import filters
from datasets.browse.filters import Cursor, FilterError, FilterSpec, Range, filter_parse


def test_empty_params_are_the_default_view():
    spec = filter_parse({})
    assert spec == FilterSpec()
    assert spec.query() == {} and not spec.is_filtered


def test_every_filter_parses_and_round_trips_through_its_query():
    params = {
        "q": "  black   cat ",
        "label": "no_match",
        "status": "waiting",
        "confidence_min": "0.25",
        "confidence_max": "1",
        "agreement_max": "0.6",
        "flagged": "yes",
        "duplicate": "canonical",
        "split": "none",
        "source": "coco",
        "license": "CC BY 4.0",
        "captions_min": "2",
        "captions_max": "5",
        "annotator": "ann",
        "kind": "hard_negative",
        "score_min": "-0.5",
        "disagree": "yes",
        "excluded": "no",
        "sort": "-score",
    }
    spec = filter_parse(params)
    assert spec.q == "black cat"
    assert spec.confidence == Range(0.25, 1.0)
    assert spec.captions == Range(2, 5)
    assert spec.score == Range(-0.5, None)
    assert spec.sort == "-score"
    assert filter_parse(spec.query()) == spec
    assert spec.query()["q"] == "black cat" and "cursor" not in spec.query()


@pytest.mark.parametrize(
    ("params", "param", "message"),
    [
        ({"lable": "match"}, "lable", filters.UNKNOWN_PARAM),
        ({"label": "maybe"}, "label", None),
        ({"status": "\x00"}, "status", None),
        ({"q": "cat\x00dog"}, "q", None),
        ({"q": "\ud800 lone surrogate"}, "q", None),
        ({"q": "x" * 201}, "q", None),
        ({"annotator": "\udfff"}, "annotator", None),
        ({"confidence_min": "1.5"}, "confidence_min", None),
        ({"confidence_min": "nan"}, "confidence_min", None),
        ({"agreement_max": "-inf"}, "agreement_max", None),
        ({"score_max": "1e400"}, "score_max", None),
        ({"captions_min": "9" * 5000}, "captions_min", None),
        ({"captions_min": "99999999999999999999"}, "captions_min", None),
        ({"captions_min": "2.5"}, "captions_min", None),
        ({"captions_min": "5", "captions_max": "2"}, "captions_min", filters.BAD_RANGE),
        ({"sort": "caption"}, "sort", None),
        ({"cursor": "%%%"}, "cursor", filters.BAD_CURSOR),
        ({"cursor": "x" * 5000}, "cursor", None),
    ],
)
def test_bad_values_name_their_parameter(params, param, message):
    with pytest.raises(FilterError) as caught:
        filter_parse(params)
    assert caught.value.param == param
    if message:
        assert caught.value.message == message


def _forged(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "payload",
    [
        ["-id", None, "7"],
        ["-id", None, -1],
        ["-id", None, 2**64],
        ["-id", 0.5, 7],  # an id sort carries no value
        ["confidence", None, 7],  # a value sort always does
        ["confidence", "0.5", 7],
        ["confidence", True, 7],
        ["id", None, 7],  # another sort's cursor
        {"sort": "-id"},
        [[[[[]]]]],
    ],
)
def test_forged_cursors_are_refused(payload):
    with pytest.raises(FilterError) as caught:
        filter_parse(
            {
                "cursor": _forged(payload),
                "sort": "confidence"
                if payload and isinstance(payload, list) and payload[0] == "confidence"
                else "-id",
            }
        )
    assert caught.value.param == "cursor"


def test_a_cursor_round_trips_for_its_sort():
    cursor = Cursor(sort="-agreement", value=0.75, id=42)
    spec = filter_parse({"sort": "-agreement", "cursor": cursor.encode()})
    assert spec.cursor == cursor
    assert spec.first_page().cursor is None
    assert filter_parse(spec.query(cursor=cursor)).cursor == cursor


def test_the_image_grid_sorts_by_id_only():
    assert filter_parse({"sort": "id"}, images=True).sort == "id"
    with pytest.raises(FilterError) as caught:
        filter_parse({"sort": "confidence"}, images=True)
    assert caught.value.message == filters.IMAGES_SORT
