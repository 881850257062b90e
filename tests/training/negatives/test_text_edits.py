"""Text-edit hard negatives change what they say they change, and nothing else."""

import csv
import itertools
import random
import re
from collections import Counter

import pytest

from tests.sample_data import SHARED_DATA
from training.negatives.text_edits import (
    EditType,
    TextEdit,
    changed_words,
    text_edits,
    text_edits_available,
)

FLICKR_CAPTIONS = SHARED_DATA / "flickr8k-1k" / "captions.csv"

COLORS = {"red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"}
COLORS |= {"gray", "grey", "tan", "silver", "gold", "golden", "navy", "teal", "turquoise"}
COLORS |= {"maroon", "crimson", "violet", "beige"}
NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
ARTICLES = {"a", "an"}
MASS_GROUND = {"grass", "sand", "dirt", "mud", "water", "ice", "gravel"}

# Captions in the style of Flickr8k, each with something for most families.
CAPTIONS = [
    "A black dog is running through the grass .",
    "Two young girls are playing on the beach .",
    "A dog chases a cat .",
    "A black dog and a white cat play in the snow .",
    "A man in a red shirt is sitting on a bench in front of a building .",
    "A woman in a blue hat walks next to a horse .",
    "a boy jumps off a dock into the water",
    "Three men ride bikes down the street , while a dog watches .",
]


def words(text: str) -> list[str]:
    return [m.group().lower() for m in re.finditer(r"[A-Za-z]+(?:['-][A-Za-z]+)*", text)]


def differing(original: str, edited: str) -> list[tuple[str, str]]:
    """(old, new) word pairs where two captions of equal word count differ, articles aside."""
    before, after = words(original), words(edited)
    assert len(before) == len(after), (original, edited)
    pairs = zip(before, after, strict=True)
    return [(b, a) for b, a in pairs if b != a and {a, b} - ARTICLES]


def edits_of(caption: str, edit_type: EditType, seeds: range = range(20)) -> list[TextEdit]:
    found: dict[str, TextEdit] = {}
    for seed in seeds:
        for edit in text_edits(caption, rng=random.Random(seed), types=[edit_type]):
            found.setdefault(edit.text, edit)
    return list(found.values())


def skeleton(text: str) -> str:
    """Everything that is not a word or a space: punctuation, in order."""
    return re.sub(r"[A-Za-z]+(?:['-][A-Za-z]+)*|\s+", "", text)


def article_agrees(article: str, word: str) -> bool:
    vowel = word[0] in "aeiou" and not word.startswith(("one", "uni", "use", "eu"))
    return article == ("an" if vowel else "a")


# --- replace -------------------------------------------------------------------------------------


def test_replace_color_changes_one_colour_into_another():
    edits = edits_of("A man in a red shirt holds a green umbrella .", EditType.REPLACE_COLOR)
    assert edits
    for edit in edits:
        [(old, new)] = differing("A man in a red shirt holds a green umbrella .", edit.text)
        assert old in {"red", "green"}
        assert new in COLORS and new not in {"red", "green"}  # nor a colour already in the caption
        # The changed stretch takes the article along where it changed too ("a red" -> "an orange").
        assert edit.before.split()[-1] == old and edit.after.split()[-1] == new


def test_replace_color_keeps_animals_in_natural_colours():
    for edit in edits_of("A brown dog runs .", EditType.REPLACE_COLOR, range(50)):
        assert differing("A brown dog runs .", edit.text) in (
            [("brown", "black")],
            [("brown", "white")],
            [("brown", "gray")],
        )


def test_colours_of_people_are_never_edited():
    caption = "A black man and a white woman stand near a red car ."
    for edit in text_edits(caption, rng=random.Random(0)):
        removed, added = changed_words(caption, edit.text)
        assert not {"black", "white"} & set(removed) - set(added), edit


def test_replace_number_changes_a_number_word_and_keeps_plurals():
    caption = "Two young girls are playing on the beach ."
    edits = edits_of(caption, EditType.REPLACE_NUMBER)
    assert edits
    for edit in edits:
        [(old, new)] = differing(caption, edit.text)
        assert old == "two" and new in NUMBERS[1:]
        assert " girls are " in edit.text
        assert edit.text[0].isupper()


def test_replace_number_makes_a_singular_phrase_plural_with_its_verb():
    edits = edits_of("A black dog is running .", EditType.REPLACE_NUMBER)
    assert {e.text for e in edits} <= {f"{n.title()} black dogs are running ." for n in NUMBERS}
    assert edits
    assert edits[0].before == "A ... dog is"

    edits = edits_of("A dog runs and jumps .", EditType.REPLACE_NUMBER)
    assert {e.text.split(" ", 1)[1] for e in edits} == {"dogs run and jump ."}

    # An object needs no verb agreement; a pronoun referring back would, so that one is left alone.
    edits = edits_of("The man holds a camera .", EditType.REPLACE_NUMBER)
    assert edits
    for edit in edits:
        assert re.fullmatch(r"The man holds (\w+) cameras \.", edit.text)[1] in NUMBERS
    assert edits_of("A dog with its ball .", EditType.REPLACE_NUMBER) == []


def test_replace_object_stays_in_its_category_and_avoids_synonyms():
    people = {"woman", "lady", "boy", "girl", "child", "kid", "baby", "toddler"}
    for edit in edits_of("A man throws a ball .", EditType.REPLACE_OBJECT, range(40)):
        [(old, new)] = differing("A man throws a ball .", edit.text)
        if old == "man":
            assert new in people  # never "guy", "gentleman", "person" or "adult"
        else:
            assert old == "ball" and new not in {"ball", "man"}

    for edit in edits_of("A puppy runs .", EditType.REPLACE_OBJECT, range(40)):
        [(old, new)] = differing("A puppy runs .", edit.text)
        assert new not in {"puppy", "dog", "dogs", "pup", "greyhound", "poodle", "terrier"}

    # "child" may be a boy or a girl: only an adult is surely something else.
    for edit in edits_of("A child plays .", EditType.REPLACE_OBJECT, range(40)):
        [(_, new)] = differing("A child plays .", edit.text)
        assert new in {"man", "woman", "lady", "guy"}

    # Plural slots get plural words, mass nouns get mass nouns.
    for edit in edits_of("Two dogs play in the snow .", EditType.REPLACE_OBJECT, range(40)):
        [(old, new)] = differing("Two dogs play in the snow .", edit.text)
        if old == "dogs":
            assert new != "dogs" and (new.endswith("s") or new == "geese")
        else:
            assert old == "snow" and new in MASS_GROUND


def test_replace_object_never_repeats_an_object_already_in_the_caption():
    for edit in edits_of("A dog chases a cat .", EditType.REPLACE_OBJECT, range(40)):
        assert edit.text not in {"A cat chases a cat .", "A dog chases a dog ."}


def test_replace_relation_swaps_multi_word_relations():
    caption = "A man stands in front of a tree ."
    texts = {e.text for e in edits_of(caption, EditType.REPLACE_RELATION, range(40))}
    assert "A man stands behind a tree ." in texts
    edit = next(e for e in edits_of(caption, EditType.REPLACE_RELATION) if "behind" in e.text)
    assert (edit.before, edit.after) == ("in front of", "behind")

    texts = {e.text for e in edits_of("Next to the car , a dog sits .", EditType.REPLACE_RELATION)}
    assert "Far from the car , a dog sits ." in texts
    texts = {e.text for e in edits_of("A dog runs down the hill .", EditType.REPLACE_RELATION)}
    assert "A dog runs up the hill ." in texts


def test_replace_relation_leaves_particles_and_non_spatial_uses_alone():
    # "picks up", "sits down ." and "covered with" are not directions or company.
    assert edits_of("A boy picks up a ball .", EditType.REPLACE_RELATION) == []
    assert edits_of("The dog is covered with snow .", EditType.REPLACE_RELATION) == []
    assert edits_of("A girl sits down .", EditType.REPLACE_RELATION) == []
    texts = {e.text for e in edits_of("A girl sits on the grass .", EditType.REPLACE_RELATION)}
    assert texts == {"A girl stands on the grass .", "A girl lies on the grass ."}


# --- swap ----------------------------------------------------------------------------------------


def test_swap_attributes_exchanges_two_adjectives():
    caption = "A black dog and a white cat play ."
    [edit] = edits_of(caption, EditType.SWAP_ATTRIBUTES)
    assert edit.text == "A white dog and a black cat play ."
    assert Counter(words(edit.text)) == Counter(words(caption))
    assert differing(caption, edit.text) == [("black", "white"), ("white", "black")]
    assert (edit.before, edit.after) == ("black ... white", "white ... black")


def test_swap_attributes_needs_different_things():
    # The same noun twice: swapped, it says the same thing.
    assert edits_of("A black dog and a white dog play .", EditType.SWAP_ATTRIBUTES) == []
    # A dog never becomes green.
    assert edits_of("A black dog plays on green grass .", EditType.SWAP_ATTRIBUTES) == []


def test_swap_objects_exchanges_two_nouns():
    caption = "A dog chases a cat ."
    [edit] = edits_of(caption, EditType.SWAP_OBJECTS)
    assert edit.text == "A cat chases a dog ."
    assert Counter(words(edit.text)) == Counter(words(caption))
    assert differing(caption, edit.text) == [("dog", "cat"), ("cat", "dog")]
    assert (edit.before, edit.after) == ("dog ... cat", "cat ... dog")


def test_swap_objects_keeps_each_slot_number_and_skips_mere_lists():
    [edit] = edits_of("A man walks two dogs .", EditType.SWAP_OBJECTS)
    assert edit.text == "A dog walks two men ."
    # "a man and a woman" swapped is the same picture.
    assert edits_of("A man and a woman walk on the beach .", EditType.SWAP_OBJECTS) == []


# --- add -----------------------------------------------------------------------------------------


def test_add_attribute_inserts_one_colour_before_an_uncoloured_object():
    caption = "A boy throws a frisbee ."
    edits = edits_of(caption, EditType.ADD_ATTRIBUTE, range(40))
    assert edits
    for edit in edits:
        removed, added = changed_words(caption, edit.text)
        inserted = [w for w in added if w not in ARTICLES]
        assert set(removed) <= ARTICLES and len(inserted) == 1 and inserted[0] in COLORS
        assert re.search(rf"\b(a|an) {inserted[0]} frisbee\b", edit.text)
        assert edit.after == f"{inserted[0]} frisbee" or edit.after.endswith(
            f"{inserted[0]} frisbee"
        )
    # "a orange frisbee" is fixed to "an orange frisbee".
    assert any(" an orange frisbee " in e.text for e in edits)


def test_add_attribute_skips_people_and_coloured_objects():
    assert edits_of("A man in a red shirt .", EditType.ADD_ATTRIBUTE) == []


# --- every family --------------------------------------------------------------------------------


@pytest.mark.parametrize("caption", CAPTIONS)
def test_edits_keep_case_punctuation_and_never_return_the_input(caption):
    for seed in range(5):
        edits = text_edits(caption, rng=random.Random(seed))
        assert edits
        texts = [e.text for e in edits]
        assert caption not in texts
        assert len(texts) == len(set(texts))
        for edit in edits:
            assert skeleton(edit.text) == skeleton(caption)
            assert edit.text[0].isupper() == caption[0].isupper()
            assert "  " not in edit.text
            removed, added = changed_words(caption, edit.text)
            assert removed or added


def test_articles_agree_with_the_new_word():
    seen_an = False
    for seed in range(60):
        for edit in text_edits("A boy with a dog and a ball .", rng=random.Random(seed)):
            tokens = words(edit.text)
            for article, word in itertools.pairwise(tokens):
                if article in ARTICLES:
                    assert article_agrees(article, word), edit.text
                    seen_an |= article == "an"
    assert seen_an


def test_same_seed_same_edits_and_limit_and_types_are_honoured():
    caption = CAPTIONS[4]
    first = text_edits(caption, rng=random.Random(7))
    assert first == text_edits(caption, rng=random.Random(7))
    assert any(text_edits(caption, rng=random.Random(s)) != first for s in range(8, 12))
    assert len(first) > 3
    limited = text_edits(caption, rng=random.Random(7), limit=3)
    assert len(limited) == 3
    assert len({e.edit_type for e in limited}) == 3  # families take turns
    only = text_edits(caption, rng=random.Random(7), types={EditType.REPLACE_RELATION})
    assert len(only) > 1 and {e.edit_type for e in only} == {EditType.REPLACE_RELATION}


def test_nothing_to_edit_gives_an_empty_list():
    assert text_edits("Band practice is cramped quarters .", rng=random.Random(0)) == []
    assert text_edits("", rng=random.Random(0)) == []


def test_changed_words_reports_removed_and_added_words():
    assert changed_words("A dog chases a cat .", "A cat chases a dog .") == (
        ["dog", "cat"],
        ["cat", "dog"],
    )
    assert changed_words("a dog", "an orange dog") == (["a"], ["an", "orange"])
    assert changed_words("Same .", "same .") == ([], [])


# --- the real captions ---------------------------------------------------------------------------


def _flickr_captions() -> list[str]:
    with FLICKR_CAPTIONS.open(newline="") as handle:
        return [row["caption"] for row in csv.DictReader(handle)]


requires_flickr = pytest.mark.skipif(
    not FLICKR_CAPTIONS.is_file(), reason=f"sample captions {FLICKR_CAPTIONS} are absent"
)


@requires_flickr
def test_most_flickr_captions_yield_an_edit_and_every_edit_is_well_formed():
    captions = _flickr_captions()
    edited = 0
    for seed, caption in enumerate(captions):
        edits = text_edits(caption, rng=random.Random(seed))
        edited += bool(edits)
        for edit in edits:
            assert edit.text != caption
            assert skeleton(edit.text) == skeleton(caption)
            removed, added = changed_words(caption, edit.text)
            content_removed = [w for w in removed if w not in ARTICLES]
            content_added = [w for w in added if w not in ARTICLES]
            if edit.edit_type is EditType.REPLACE_COLOR:
                [(old, new)] = differing(caption, edit.text)
                assert old in COLORS and new in COLORS and old != new
            elif edit.edit_type is EditType.ADD_ATTRIBUTE:
                assert content_removed == [] and len(content_added) == 1
                assert content_added[0] in COLORS
            elif edit.edit_type in (EditType.SWAP_ATTRIBUTES, EditType.SWAP_OBJECTS):
                pairs = differing(caption, edit.text)
                assert len(pairs) == 2, edit
                if edit.edit_type is EditType.SWAP_ATTRIBUTES:
                    assert pairs[0] == pairs[1][::-1]
            elif edit.edit_type is EditType.REPLACE_NUMBER:
                assert set(content_added) & set(NUMBERS)
    assert edited / len(captions) >= 0.8, f"{edited} of {len(captions)} captions edited"


# --- other languages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caption", "edit_type", "before", "after_options"),
    [
        ("两只黑狗在草地上玩红色的球。", EditType.REPLACE_COLOR, "红", set("橙绿蓝紫白灰黄棕粉")),
        ("两只黑狗在草地上玩。", EditType.REPLACE_NUMBER, "两", set("一三四五六")),
        ("一个穿着白色T恤的男孩在沙滩上跑。", EditType.REPLACE_OBJECT, "男孩", {"女孩", "老人"}),
        ("一只猫在沙发上睡觉", EditType.REPLACE_OBJECT, "猫", {"狗", "兔子"}),
    ],
)
def test_chinese_edits_replace_in_place(caption, edit_type, before, after_options):
    edits = [
        e
        for e in text_edits(caption, rng=random.Random(3), language="zh")
        if e.edit_type == edit_type and e.before == before
    ]

    assert edits
    for edit in edits:
        assert edit.after in after_options
        assert edit.text == caption.replace(edit.before, edit.after, 1)


def test_chinese_colours_are_replaced_only_before_what_they_colour():
    # 白天 is "daytime" and 红绿灯 a traffic light: no colour to replace in either.
    edits = text_edits("小孩在白天看红绿灯", rng=random.Random(0), language="zh")

    assert all(e.edit_type != EditType.REPLACE_COLOR for e in edits)


def test_chinese_colours_never_become_one_already_in_the_caption_or_a_near_one():
    for seed in range(30):
        for edit in text_edits("一只黄狗叼着黑色的球", rng=random.Random(seed), language="zh"):
            if edit.edit_type == EditType.REPLACE_COLOR:
                assert edit.after not in "黄棕黑"


@pytest.mark.parametrize("language", ["hi", "ja", "th", "ar", "he", "fa", "ko", "de"])
def test_no_lexicon_no_edits(language):
    assert not text_edits_available(language)
    assert (
        text_edits("A black dog runs on the grass", rng=random.Random(0), language=language) == []
    )


def test_a_project_of_several_languages_edits_each_caption_in_its_own():
    assert text_edits_available("mul")
    assert text_edits("A black dog runs on the grass", rng=random.Random(0), language="mul")
    assert text_edits("两只黑狗在草地上玩", rng=random.Random(0), language="mul")
    assert text_edits("浜辺で遊ぶ二匹の黒い犬", rng=random.Random(0), language="mul") == []


@pytest.mark.parametrize(
    "caption",
    [
        "Zwei Hunde spielen am Strand mit einem roten Ball",  # German, ASCII
        "Un chien noir court sur la plage avec une balle rouge",  # French
        "Twee zwarte honden spelen op het strand",  # Dutch
        "Dos perros negros juegan en la playa con una pelota roja",  # Spanish
        "Ein schwarzer Hund läuft über die grüne Wiese",  # German, with an umlaut
    ],
)
def test_latin_captions_of_other_languages_get_no_english_edits(caption):
    """In a project of several languages an English word swap on a German caption writes
    nonsense ("mit einem roten Rope"): a caption a language identifier is sure is not English
    gets no edit, as in a project of that language."""
    assert text_edits(caption, rng=random.Random(0), language="mul") == []


@pytest.mark.parametrize(
    "caption", ["A black dog runs on the grass", "dog runs", "Two red balls on the beach"]
)
def test_short_or_plain_english_captions_still_get_edits_in_a_project_of_several(caption):
    assert text_edits(caption, rng=random.Random(0), language="mul")
