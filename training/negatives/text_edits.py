"""Text-edit hard negatives: captions that no longer describe their image.

From one of an image's own captions, make small edits that turn it false while keeping it fluent, as in
SugarCrepe's replace / swap / add families (Hsieh et al., 2023): replace a colour, number, object or
relation word, swap two attributes or two objects, or add a colour to an uncoloured object. A small
built-in lexicon stands in for a parser, tuned on Flickr8k-style captions ("A black dog is running
through the grass .").

The edits are proposals, not verified negatives: a human still judges each one (an added colour may be
right by chance, "holding" may become "dropping" in a photo where both fit). The lexicon therefore aims
at edits that are *probably* false, never at ones that are certainly still true: a word is only
replaced by one that cannot denote the same thing (no "man" -> "guy", no "child" -> "boy", no
"water" -> "ocean").

Lexicons exist for English and Chinese (:data:`TEXT_EDIT_LANGUAGES`); for any other language
:func:`text_edits` proposes nothing, and the Negatives page says so. Chinese needs no parser for
the replace family: words are not inflected and have no articles, so a colour, a count before a
measure word, or a person or animal noun is replaced in place (红色→蓝色, 两只→三只, 男孩→女孩).

Pure: standard library only, no Django.
"""

from __future__ import annotations

import difflib
import functools
import random
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum


class EditType(StrEnum):
    REPLACE_COLOR = "replace_color"
    REPLACE_NUMBER = "replace_number"
    REPLACE_OBJECT = "replace_object"
    REPLACE_RELATION = "replace_relation"
    SWAP_ATTRIBUTES = "swap_attributes"
    SWAP_OBJECTS = "swap_objects"
    ADD_ATTRIBUTE = "add_attribute"


@dataclass(frozen=True)
class TextEdit:
    """One edited caption. ``before``/``after`` are the changed stretches of the caption and what they
    became; separate stretches are joined by " ... " (a swap reads "dog ... cat" -> "cat ... dog")."""

    text: str
    edit_type: EditType
    before: str
    after: str


# --- Lexicon ------------------------------------------------------------------------------------
#
# Words carry *tags*: the things they can denote. Two words are compatible (could describe the same
# thing) when their tags overlap, and a replacement must be incompatible with the word it replaces:
# "child" (boy, girl, baby) is never replaced by "boy", but "boy" may become "girl" or "man".

_COLORS: dict[str, frozenset[str]] = {
    word: frozenset(tags.split())
    for word, tags in {
        "red": "red",
        "crimson": "red",
        "maroon": "red brown purple",
        "orange": "orange",
        "yellow": "yellow",
        "gold": "yellow brown",
        "golden": "yellow brown",
        "green": "green",
        "teal": "green blue",
        "turquoise": "green blue",
        "blue": "blue",
        "navy": "blue",
        "purple": "purple",
        "violet": "purple",
        "pink": "pink red",
        "brown": "brown",
        "tan": "brown",
        "beige": "brown white",
        "black": "black",
        "white": "white",
        "gray": "gray",
        "grey": "gray",
        "silver": "gray",
    }.items()
}
# Colours an edit may introduce (one spelling per colour).
_COLOR_TARGETS = (
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
    "gray",
)

# Animals and hair come in few colours: "a brown dog" may become "a white dog" but never "a purple
# dog", "brown hair" never "green hair".
_NATURAL_COLORS = frozenset({"black", "white", "brown", "gray"})
_NATURAL_COLORED = frozenset({"hair", "fur", "haired", "beard", "coat"})

_NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
# Numbers that replace a singular "a dog" -> "three dogs"; small counts keep the edit plausible.
_SMALL_NUMBERS = ("two", "three", "four")

# Size words take part in attribute swaps ("a little girl and a big dog").
_SIZES: dict[str, frozenset[str]] = {
    "small": frozenset({"small"}),
    "little": frozenset({"small"}),
    "tiny": frozenset({"small"}),
    "big": frozenset({"big"}),
    "large": frozenset({"big"}),
    "huge": frozenset({"big"}),
    "tall": frozenset({"tall"}),
}

# Objects by category. Each entry is "singular/plural = tags": the plural defaults to the regular
# English plural, "-" marks a form that does not exist (mass nouns have no plural, "shorts" no
# singular), and the tags default to the entry's first word. A word's tags include those of its
# hyponyms ("skirt" covers "tutu", "child" covers "boy"). Entries marked "~" are recognised and
# replaced but never put into a caption ("a boy" never becomes "a groom").
_OBJECT_TABLE: dict[str, str] = {
    "person": """
        man/men; guy = man; ~gentleman/gentlemen = man; woman/women; lady = woman; boy; girl;
        child/children = boy girl babyboy babygirl; kid = boy girl babyboy babygirl;
        baby = babyboy babygirl; toddler = babyboy babygirl; ~bride = woman; ~groom = man;
        ~mother = woman; ~father = man; ~person/people = man woman boy girl babyboy babygirl;
        ~adult = man woman; ~teenager = boy girl man woman
    """,
    "athlete": """
        skier; snowboarder; surfer; swimmer; cyclist; ~bicyclist = cyclist;
        ~biker = cyclist motorcyclist; motorcyclist; ~rider = cyclist motorcyclist rider;
        skateboarder = skater; ~skater = skater; climber; hiker; runner; ~jogger = runner;
        wrestler; diver; kayaker
    """,
    "performer": "singer; guitarist; drummer; dancer; ~musician = singer guitarist drummer",
    "animal": """
        dog; ~puppy = dog; ~pup = dog; ~greyhound = dog; ~poodle = dog; ~terrier = dog;
        ~retriever = dog; ~collie = dog; ~lab = dog; cat; ~kitten = cat; horse;
        ~pony/ponies = horse; cow = cattle; bull = cattle; ~calf/calves = cattle;
        bird = bird duck goose chicken seagull; duck; goose/geese; chicken; seagull; goat;
        elephant; camel; pig; monkey; bear; rabbit; squirrel; lion; tiger; giraffe; zebra; donkey
    """,
    "vehicle": """
        bike = bicycle motorcycle; bicycle; motorcycle; ~motorbike = motorcycle; scooter; car;
        truck; bus/buses; train; boat = boat canoe kayak raft sailboat; canoe; kayak; raft;
        sailboat; tractor; wheelchair; stroller; cart; wagon; sled; helicopter; airplane
    """,
    "clothing": """
        shirt = shirt tshirt jersey; t-shirt = tshirt; jersey; jacket = jacket coat;
        coat = coat jacket; sweater = sweater sweatshirt; sweatshirt = sweater sweatshirt; vest;
        dress/dresses; skirt = skirt tutu; ~tutu; hat = hat cap; cap; helmet; bandanna;
        scarf/scarves; mask; -/shorts; -/pants = pants jeans; -/jeans; -/sunglasses = glasses;
        -/glasses = glasses; -/goggles; bikini = swimsuit; swimsuit = swimsuit bikini; wetsuit;
        glove; boot = shoe; shoe = shoe boot; apron
    """,
    "sport_object": """
        ball; frisbee; stick; bat; racket; skateboard; surfboard; snowboard; ski; kite; rope; hoop;
        balloon; trampoline
    """,
    "handheld": """
        camera; phone = phone cellphone; ~cellphone = phone; umbrella; guitar; microphone; book;
        bag = bag backpack purse; backpack; purse; bucket; bottle; cup; flag; sign; newspaper;
        leash/leashes; shovel
    """,
    "furniture": """
        bench/benches; chair; couch/couches = couch sofa; ~sofa = couch sofa; table; bed; stool
    """,
    "food": "pizza; sandwich/sandwiches; cake; apple; banana; watermelon; cookie",
    "structure": """
        tree; rock; log; bush/bushes; flower; building; fence; wall; bridge; tent; fountain; house;
        statue; tower
    """,
    "place": """
        beach/beaches = beach shore; ~shore = shore beach; street = street road;
        road = road street; sidewalk; path = path trail; ~trail = trail path;
        field = field yard lawn park; park = park field playground lawn;
        playground = playground park; ~yard = yard field lawn; ~lawn = lawn field yard park;
        forest = forest woods; ~-/woods = woods forest; mountain = mountain hill;
        hill = hill mountain; city/cities = city street; pool; lake = lake pond; ~pond = pond lake;
        river = river stream; ~stream = stream river creek; ~creek = creek stream;
        ocean = ocean sea; ~sea = sea ocean; desert
    """,
    "indoors": "kitchen; restaurant; store; gym; church; stage; classroom; bathroom; bedroom",
    "terrain": """
        grass/-; snow/-; sand/- = sand; dirt/- = dirt mud; mud/- = mud dirt; water/-; ice/-;
        gravel/-
    """,
    # Games, as in "playing soccer" or "a soccer ball"; mass-like, used as modifiers.
    "sport": """
        soccer/-; football/-; basketball/-; baseball/-; tennis/-; hockey/-; volleyball/-; rugby/-;
        golf/-; lacrosse/-; softball/-
    """,
}

# Categories whose members may trade places in a swap ("a dog chases a cat", "a man in a hat and a
# woman in a dress"); a swap across groups ("a street walks down the man", "a black wall near a
# rocky backpack") is never plausible. Vehicles, furniture and buildings do not swap at all.
_SWAP_GROUPS = {
    "person": "living",
    "athlete": "living",
    "performer": "living",
    "animal": "living",
    "clothing": "clothing",
    "place": "scene",
    "indoors": "scene",
    "terrain": "scene",
    "handheld": "handheld",
    "sport_object": "handheld",
    "food": "handheld",
}
# Categories that may gain a colour ("a dog" -> "a brown dog"); never people, places or food.
_COLORABLE = frozenset(
    {"animal", "vehicle", "clothing", "sport_object", "handheld", "furniture", "structure"}
)
# Things one can be "on" or "under" ("sitting on a bench" -> "sitting under a bench").
_ON_UNDER = frozenset({"furniture", "structure", "vehicle"})


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_IRREGULAR_3SG = {"is": "are", "was": "were", "has": "have", "does": "do", "goes": "go"}


@dataclass(frozen=True)
class _Noun:
    lemma: str
    category: str
    tags: frozenset[str]
    singular: str | None
    plural: str | None
    introduced: bool  # whether an edit may put this word into a caption

    @property
    def mass(self) -> bool:
        return self.plural is None

    def form(self, number: str) -> str | None:
        """The surface form for a slot's grammatical number: "sg", "pl" or "mass"."""
        if number == "mass":
            return self.singular if self.mass else None
        if self.mass:
            return None
        return self.singular if number == "sg" else self.plural


def _plural(noun: str) -> str:
    """Regular English plural ("dog" -> "dogs", "bus" -> "buses", "puppy" -> "puppies")."""
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in set("aeiou"):
        return noun[:-1] + "ies"
    return noun + "s"


def _parse_objects(table: dict[str, str]) -> tuple[dict[str, _Noun], dict[str, tuple[_Noun, str]]]:
    lemmas: dict[str, _Noun] = {}
    surface: dict[str, tuple[_Noun, str]] = {}
    for category, entries in table.items():
        for raw in entries.split(";"):
            forms, _, tags = raw.strip().partition("=")
            introduced = not forms.strip().startswith("~")
            first, _, second = forms.strip().lstrip("~").partition("/")
            mass = second == "-"
            singular = None if first == "-" else first
            if mass:
                plural_form = None
            elif second and second != "-":
                plural_form = second
            else:
                plural_form = _plural(first)
            lemma = singular or plural_form
            assert lemma is not None
            noun = _Noun(
                lemma=lemma,
                category=category,
                tags=frozenset(tags.split() or [lemma.replace("-", "")]),
                singular=singular,
                plural=plural_form,
                introduced=introduced,
            )
            assert lemma not in lemmas, lemma
            lemmas[lemma] = noun
            for form, number in ((singular, "mass" if mass else "sg"), (plural_form, "pl")):
                if form:
                    assert form not in surface, form
                    surface[form] = (noun, number)
    return lemmas, surface


_LEMMAS, _SURFACE = _parse_objects(_OBJECT_TABLE)
_BY_CATEGORY: dict[str, list[_Noun]] = {}
for _noun in _LEMMAS.values():
    _BY_CATEGORY.setdefault(_noun.category, []).append(_noun)

# Spatial relations and their opposites; several words become one ("behind" -> "in front of").
_RELATIONS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("in", "front", "of"): ("behind",),
    ("behind",): ("in front of",),
    ("next", "to"): ("far from",),
    ("beside",): ("far from",),
    ("near",): ("far from",),
    ("far", "from"): ("next to",),
    ("above",): ("below",),
    ("below",): ("above",),
    ("under",): ("above", "on top of"),
    ("underneath",): ("above", "on top of"),
    ("beneath",): ("above", "on top of"),
    ("on", "top", "of"): ("under",),
    ("inside",): ("outside",),
    ("outside",): ("inside",),
    ("into",): ("out of",),
    ("out", "of"): ("into",),
    ("toward",): ("away from",),
    ("towards",): ("away from",),
    ("away", "from"): ("toward",),
    ("onto",): ("off",),
    ("off", "of"): ("onto",),
    ("off",): ("onto",),
    ("over",): ("under",),
    ("up",): ("down",),
    ("down",): ("up",),
    ("with",): ("without",),
    ("without",): ("with",),
    ("left",): ("right",),
    ("right",): ("left",),
    ("on",): ("under",),
}
# Relations that are only spatial before a noun phrase: "runs down the hill" but not "sits down",
# "jumps over the log" but not "bends over", "with a ball" but not "covered with snow".
_NEEDS_NOUN_PHRASE = frozenset({"over", "up", "down", "with", "without", "off", "on"})

# Actions and the ones that replace them, in base / third-person / -ing form. SugarCrepe counts
# actions as relations ("riding a horse" -> "feeding a horse"), and so does this module.
_VERB_FORMS = [
    ("sit", "sits", "sitting"),
    ("stand", "stands", "standing"),
    ("lie", "lies", "lying"),
    ("lay", "lays", "laying"),
    ("kneel", "kneels", "kneeling"),
    ("run", "runs", "running"),
    ("jog", "jogs", "jogging"),
    ("walk", "walks", "walking"),
    ("swim", "swims", "swimming"),
    ("jump", "jumps", "jumping"),
    ("leap", "leaps", "leaping"),
    ("hold", "holds", "holding"),
    ("carry", "carries", "carrying"),
    ("drop", "drops", "dropping"),
    ("throw", "throws", "throwing"),
    ("catch", "catches", "catching"),
    ("kick", "kicks", "kicking"),
    ("push", "pushes", "pushing"),
    ("pull", "pulls", "pulling"),
    ("ride", "rides", "riding"),
    ("walk next to", "walks next to", "walking next to"),
]
_VERB_REPLACEMENTS = {
    "sit": ("stand", "lie"),
    "stand": ("sit", "lie"),
    "lie": ("stand", "sit"),
    "lay": ("stand", "sit"),
    "kneel": ("stand",),
    "run": ("walk",),
    "jog": ("walk",),
    "walk": ("run",),
    "swim": ("stand",),
    "jump": ("walk",),
    "leap": ("walk",),
    "hold": ("drop", "throw"),
    "carry": ("drop", "push"),
    "throw": ("catch",),
    "catch": ("throw",),
    "kick": ("catch", "hold"),
    "push": ("pull",),
    "pull": ("push",),
    "ride": ("walk next to",),
}
_VERBS: dict[str, tuple[str, int]] = {}  # surface form -> (base, form index)
for _forms in _VERB_FORMS:
    for _index, _form in enumerate(_forms):
        if _index and " " not in _form:  # base forms are too often nouns ("a run", "a walk")
            _VERBS[_form] = (_forms[0], _index)
_FORMS_OF = {forms[0]: forms for forms in _VERB_FORMS}

# Third-person verbs common in captions, for subject-verb agreement when "a dog" becomes "two dogs".
_VERBS_3SG = _wordset(
    """
    runs stands jumps sits walks plays looks rides holds climbs carries swims watches smiles poses
    leaps catches throws chases pulls pushes wears races lays lies eats drinks hits kicks splashes
    flies sleeps waits swings slides stares reaches waves gets takes makes crosses performs dances
    laughs hangs leans rests talks bends lands prepares balances grinds paddles digs dives skis
    skates surfs hugs kisses falls tries uses sings shows reads sniffs licks bites fetches practices
    competes steps stops turns works kneels jogs drops sprints wades leads follows helps gives
    enjoys tosses shakes rolls blows points grabs
    """
)

_DETERMINERS = _wordset(
    "a an the his her its their my your our some another this these those each every"
) | frozenset(("one", *_NUMBERS, "several", "many"))
_ADJECTIVES = (
    _wordset(
        """
    young little small large big old older tall wet muddy dirty fluffy furry shaggy happy smiling long
    short curly skinny elderly teenage blond blonde striped spotted wooden metal plastic tiny huge
    fat thin pretty cute adult male female shirtless asian african american dark light bright
    colorful colourful younger baby
    """
    )
    | frozenset(_COLORS)
    | frozenset(_SIZES)
)
# Words that make the next noun part of a compound ("life jacket", "hot dog", "bathing suit").
_MODIFIERS = _wordset(
    "hot life bathing swim tank fire police cowboy sea t dirt water beach snow ice rock"
)
# Verbs whose "up"/"down"/"off"/"over" is a particle, not a direction ("picks up a ball").
_PARTICLE_VERBS = _wordset(
    """
    pick picks picking picked hold holds holding held lift lifts lifting set sets setting put puts
    putting give gives giving show shows showing take takes taking turn turns turning hand hands
    handing fill fills filling clean cleans cleaning
    """
)
# Words after which a noun phrase has surely ended.
_FOLLOWERS = _wordset(
    """
    in on at with by near of from to into onto over under behind through across along around for
    while as and or but that who which down up off out inside outside beside next above below
    toward towards past against between during without are were have
    """
)
# "holds up a sign", "sits down": after these verbs the word is a particle and the verb an idiom.
_PARTICLES = _wordset("up down off out away back")
_MOTION_VERBS = _wordset("run jog walk swim jump leap")
_PRONOUNS = _wordset("he she it his her hers its him himself herself itself")
_CLAUSE_WORDS = _wordset("while as when where because but though although whilst")
_RELATIVE_WORDS = _wordset("that who which")

_WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*")


# --- Tokens and rendering ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    text: str
    start: int
    end: int

    @property
    def lower(self) -> str:
        return self.text.lower()


def _tokenize(caption: str) -> list[_Token]:
    return [_Token(m.group(), m.start(), m.end()) for m in _WORD.finditer(caption)]


def _match_case(template: str, word: str) -> str:
    if len(template) > 1 and template.isupper():
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _article_for(word: str) -> str:
    """The indefinite article by the sound of ``word``'s start (good enough for caption vocabulary)."""
    lower = word.lower()
    if lower.startswith(("one", "uni", "use", "usu", "eu", "ewe")):
        return "a"
    if lower.startswith(("hour", "honest", "honor", "heir")):
        return "an"
    return "an" if lower[:1] in set("aeiou") else "a"


_Changes = dict[int, str]  # token index -> new text ("" removes the token)


@dataclass
class _Caption:
    text: str
    tokens: list[_Token]
    words: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.words = [token.lower for token in self.tokens]

    def gap_before(self, index: int) -> str:
        start = self.tokens[index - 1].end if index > 0 else 0
        return self.text[start : self.tokens[index].start]

    def joined(self, left: int, right: int) -> bool:
        """Whether tokens ``left`` and ``right`` (= left + 1) are separated by whitespace only."""
        return left >= 0 and right < len(self.tokens) and not self.gap_before(right).strip()

    def noun(self, index: int) -> tuple[_Noun, str] | None:
        """The lexicon noun at ``index`` and its number, unless it is part of a compound."""
        if not 0 <= index < len(self.tokens):
            return None
        found = _SURFACE.get(self.tokens[index].lower)
        if found is None:
            return None
        # "water bottle", "dog park": the first noun only modifies the second.
        if (
            self.joined(index, index + 1)
            and self.words[index + 1] in _SURFACE
            and found[0].category != "sport"
        ):
            return None
        # "tennis ball", "hot dog", "life jacket": a modifier makes it another thing.
        if index > 0 and self.joined(index - 1, index):
            before = self.words[index - 1]
            if before in _MODIFIERS or before in _SURFACE:
                return None
        return found

    def head_noun(self, index: int, *, skip: int = 2) -> int | None:
        """The index of the lexicon noun that the word at ``index`` modifies, looking past at most
        ``skip`` adjectives ("a small black dog")."""
        for offset in range(1, skip + 2):
            j = index + offset
            if j >= len(self.tokens) or not self.joined(j - 1, j):
                return None
            if self.words[j] in _SURFACE:
                return j if self.noun(j) else None
            if self.words[j] not in _ADJECTIVES and "-" not in self.words[j]:
                return None
        return None


def _render(caption: _Caption, changes: _Changes, edit_type: EditType) -> TextEdit | None:
    changes = _fix_articles(caption, changes)
    text, tokens = caption.text, caption.tokens
    out: list[str] = []
    length = 0
    cursor = 0
    spans: list[tuple[int, int, int, int, int]] = []  # index, orig start/end, new start/end
    for index in sorted(changes):
        token, new = tokens[index], changes[index]
        start = token.start
        if not new:  # drop the whitespace before a removed word
            while start > cursor and text[start - 1].isspace():
                start -= 1
        out.append(text[cursor:start])
        length += start - cursor
        new_start = length
        out.append(new)
        length += len(new)
        spans.append((index, start if new else token.start, token.end, new_start, length))
        cursor = token.end
    out.append(text[cursor:])
    edited = "".join(out)
    if edited == text:
        return None
    groups: list[list[tuple[int, int, int, int, int]]] = []
    for span in spans:
        if groups and groups[-1][-1][0] == span[0] - 1:
            groups[-1].append(span)
        else:
            groups.append([span])
    before = " ... ".join(text[g[0][1] : g[-1][2]].strip() for g in groups)
    after = " ... ".join(edited[g[0][3] : g[-1][4]].strip() for g in groups)
    return TextEdit(text=edited, edit_type=edit_type, before=before, after=after)


def _fix_articles(caption: _Caption, changes: _Changes) -> _Changes:
    """Make every "a"/"an" in front of a changed word agree with it ("a dog" -> "an elephant")."""
    fixed = dict(changes)
    for index, token in enumerate(caption.tokens):
        if token.lower not in ("a", "an") or index in changes:
            continue
        following = index + 1
        while following in changes and not changes[following]:
            following += 1
        if following == index + 1 and following not in changes:
            continue
        if following >= len(caption.tokens):
            continue
        word = changes.get(following, caption.tokens[following].text)
        article = _article_for(word)
        if article != token.lower:
            fixed[index] = _match_case(token.text, article)
    return fixed


# --- Edit families -------------------------------------------------------------------------------


def _colors_in(caption: _Caption) -> frozenset[str]:
    return frozenset(tag for word in caption.words for tag in _COLORS.get(word, ()))


def _colored_noun(caption: _Caption, index: int) -> int | None:
    """The noun that the colour word at ``index`` describes, also across "black and white dog";
    "hair" and the like count as nouns here."""
    position = index
    while position + 2 < len(caption.words) and caption.words[position + 1] == "and":
        if caption.words[position + 2] not in _COLORS:
            break
        position += 2
    following = position + 1
    if caption.joined(position, following) and caption.words[following] in _NATURAL_COLORED:
        return following
    return caption.head_noun(position)


def _describes_person(caption: _Caption, index: int) -> bool:
    """Colour words in front of people speak of skin ("a black man"); they are never edited."""
    head = _colored_noun(caption, index)
    if head is None or caption.words[head] not in _SURFACE:
        return False
    return _SURFACE[caption.words[head]][0].category == "person"


def _palette(caption: _Caption, noun_index: int | None) -> tuple[str, ...]:
    """The colours an edit may give the noun at ``noun_index`` (None: a colour word on its own)."""
    if noun_index is not None and (
        caption.words[noun_index] in _NATURAL_COLORED
        or _SURFACE[caption.words[noun_index]][0].category == "animal"
    ):
        return tuple(c for c in _COLOR_TARGETS if c in _NATURAL_COLORS)
    return _COLOR_TARGETS


def _replace_color(caption: _Caption, rng: random.Random) -> Iterator[_Changes]:
    present = _colors_in(caption)
    for index, word in enumerate(caption.words):
        if word not in _COLORS or _describes_person(caption, index):
            continue
        # "eating an orange": the colour word is a noun here.
        if word == "orange" and index > 0 and caption.words[index - 1] in ("a", "an"):
            continue
        palette = _palette(caption, _colored_noun(caption, index))
        choices = [c for c in palette if not (_COLORS[c] & (present | _COLORS[word]))]
        if choices:
            yield {index: _match_case(caption.tokens[index].text, rng.choice(choices))}


def _replace_number(caption: _Caption, rng: random.Random) -> Iterator[_Changes]:
    words = caption.words
    for index, word in enumerate(words):
        if word in _NUMBERS:
            choices = [n for n in _NUMBERS if n != word]
            yield {index: _match_case(caption.tokens[index].text, rng.choice(choices))}
        elif word in ("a", "an", "one"):
            changes = _pluralize_phrase(caption, index)
            if changes:
                number = rng.choice(_SMALL_NUMBERS)
                changes[index] = _match_case(caption.tokens[index].text, number)
                yield changes


def _pluralize_phrase(caption: _Caption, index: int) -> _Changes | None:
    """Make "a black dog is" into "_ black dogs are", keeping the verb in agreement; None where agreement
    is out of reach (a pronoun refers back, a relative clause follows, a possessive)."""
    words = caption.words
    head = caption.head_noun(index)
    if head is None:
        return None
    noun, number = _SURFACE[words[head]]
    if number != "sg" or noun.plural is None or noun.category == "clothing":
        return None  # "wearing four jackets" is no plausible picture
    if not _phrase_ends(caption, head):
        return None  # "a dog race" would become "four dogs race"
    if any(word in _PRONOUNS for word in words[head + 1 :]):
        return None
    after = caption.text[caption.tokens[head].end :].lstrip()
    if after.startswith("'"):
        return None
    changes: _Changes = {head: _match_case(caption.tokens[head].text, noun.plural)}
    before = words[index - 1] if index > 0 else None
    starts_clause = before is None or before in _CLAUSE_WORDS or before == "and"
    starts_clause = starts_clause or bool(index and caption.gap_before(index).strip())
    if not starts_clause:
        # An object: only a relative clause ("a dog that is running") would have to agree.
        if head + 1 < len(words) and words[head + 1] in _RELATIVE_WORDS:
            return None
        return changes
    position = head + 1
    while position < len(words):
        if set(caption.gap_before(position)) & set(".;:!?"):  # the sentence ends
            break
        word = words[position]
        # "on the steps", "in the waves": a third-person form after a determiner is a noun.
        is_noun = words[position - 1] in _DETERMINERS or words[position - 1] in _ADJECTIVES
        if word in _IRREGULAR_3SG or (word in _VERBS_3SG and not is_noun):
            changes[position] = _match_case(caption.tokens[position].text, _base_form(word))
            # "runs and jumps": the second verb agrees too.
            second = position + 2
            if second < len(words) and words[second - 1] == "and" and words[second] in _VERBS_3SG:
                changes[second] = _base_form(words[second])
            break
        if word in _CLAUSE_WORDS or word == "and":
            break
        position += 1
    return changes


def _phrase_ends(caption: _Caption, head: int) -> bool:
    """Whether the noun phrase ends at ``head``: punctuation, the end, or a word that cannot
    continue a noun ("a dog runs", "a dog in", "a dog jumping")."""
    following = head + 1
    if following >= len(caption.words) or not caption.joined(head, following):
        return True
    word = caption.words[following]
    return (
        word in _FOLLOWERS
        or word in _IRREGULAR_3SG
        or word in _VERBS_3SG
        or word.endswith("ing")
        or word.endswith("ed")
    )


def _base_form(verb: str) -> str:
    if verb in _IRREGULAR_3SG:
        return _IRREGULAR_3SG[verb]
    if verb.endswith("ies") and len(verb) > 4:
        return verb[:-3] + "y"
    if verb.endswith(("ches", "shes", "sses", "xes", "zes")):
        return verb[:-2]
    return verb[:-1]


def _object_slots(caption: _Caption) -> Iterator[tuple[int, _Noun, str]]:
    for index in range(len(caption.tokens)):
        found = caption.noun(index)
        if found:
            yield index, found[0], found[1]


def _replace_object(caption: _Caption, rng: random.Random) -> Iterator[_Changes]:
    # "a dog and a cat" never becomes "a cat and a cat".
    present = {_SURFACE[word][0].lemma for word in caption.words if word in _SURFACE}
    for index, noun, number in _object_slots(caption):
        choices = sorted(
            form
            for other in _BY_CATEGORY[noun.category]
            if other.introduced
            and not other.tags & noun.tags
            and other.lemma not in present
            and (form := other.form(number))
        )
        if choices:
            yield {index: _match_case(caption.tokens[index].text, rng.choice(choices))}


def _followed_by_noun_phrase(caption: _Caption, index: int) -> bool:
    following = index + 1
    if following >= len(caption.tokens) or not caption.joined(index, following):
        return False
    word = caption.words[following]
    return word in _DETERMINERS or word in _ADJECTIVES or caption.noun(following) is not None


def _replace_relation(caption: _Caption, rng: random.Random) -> Iterator[_Changes]:
    words, tokens = caption.words, caption.tokens
    index = 0
    while index < len(words):
        for size in (3, 2, 1):
            phrase = tuple(words[index : index + size])
            if len(phrase) < size or phrase not in _RELATIONS:
                continue
            last = index + size - 1
            if not all(caption.joined(i, i + 1) for i in range(index, last)):
                continue
            if not _relation_applies(caption, phrase, index, last):
                continue
            new = rng.choice(_RELATIONS[phrase])
            changes = {index: _match_case(tokens[index].text, new)}
            changes.update({i: "" for i in range(index + 1, last + 1)})
            yield changes
            index = last
            break
        else:
            verb = _VERBS.get(words[index])
            if verb and _verb_applies(caption, index):
                base, form = verb
                new_base = rng.choice(_VERB_REPLACEMENTS.get(base, ()) or (None,))
                if new_base is not None:
                    new = _FORMS_OF[new_base][form]
                    yield {index: _match_case(tokens[index].text, new)}
        index += 1


def _relation_applies(caption: _Caption, phrase: tuple[str, ...], index: int, last: int) -> bool:
    words = caption.words
    previous = words[index - 1] if index > 0 else ""
    if phrase in (("left",), ("right",)):
        return previous in ("the", "his", "her", "its", "their")
    if len(phrase) == 1 and phrase[0] in _NEEDS_NOUN_PHRASE:
        if not _followed_by_noun_phrase(caption, last) or previous in _PARTICLE_VERBS:
            return False
        if phrase[0] == "with" and previous.endswith("ed"):  # "covered with snow", "filled with"
            return False
        if phrase[0] == "on":  # "on the beach" is no place to be under
            head = caption.head_noun(last + 1) if words[last + 1] in _DETERMINERS else None
            return head is not None and _SURFACE[words[head]][0].category in _ON_UNDER
    return True


def _verb_applies(caption: _Caption, index: int) -> bool:
    words = caption.words
    previous = words[index - 1] if index > 0 else ""
    # "in the stands", "a swimming pool", "a large swimming pool": a noun or a modifier.
    if previous in _DETERMINERS or previous in _ADJECTIVES:
        return False
    following = words[index + 1] if index + 1 < len(words) else ""
    if following in _PARTICLES and _VERBS[words[index]][0] not in _MOTION_VERBS:
        return False  # "holds up a sign" is not "drops up a sign"; "runs up a hill" walks up it
    if words[index] in ("riding", "rides"):  # "riding a bike" -> "walking next to a bike"
        return index + 1 < len(words) and words[index + 1] in _DETERMINERS
    if _VERBS[words[index]][0] in ("jump", "leap"):  # "leaps into the air" is no walk
        return not _wordset("up air midair high") & set(words[index + 1 : index + 4])
    return True


def _attribute_slots(caption: _Caption) -> Iterator[tuple[int, int, str, frozenset[str]]]:
    """(adjective index, noun index, kind, tags) for colour and size words before a lexicon noun;
    colours only on things that take any colour (no "black grass", no "blue man")."""
    for index, word in enumerate(caption.words):
        head = caption.head_noun(index, skip=1)
        if head is None:
            continue
        if word in _COLORS and _SURFACE[caption.words[head]][0].category in _COLORABLE:
            yield index, head, "color", _COLORS[word]
        elif word in _SIZES:
            yield index, head, "size", _SIZES[word]


def _swap_attributes(caption: _Caption, rng: random.Random) -> Iterator[_Changes]:
    slots = list(_attribute_slots(caption))
    for a, (adj_a, noun_a, kind_a, tags_a) in enumerate(slots):
        for adj_b, noun_b, kind_b, tags_b in slots[a + 1 :]:
            if kind_a != kind_b or noun_a == noun_b or tags_a & tags_b:
                continue
            words = caption.words
            if kind_a == "color" and not (
                words[adj_b] in _palette(caption, noun_a)
                and words[adj_a] in _palette(caption, noun_b)
            ):
                continue  # "a black dog ... a green ball" must not make a green dog
            if _SURFACE[caption.words[noun_a]][0].tags & _SURFACE[caption.words[noun_b]][0].tags:
                continue  # "a black dog and a white puppy" says the same swapped
            tokens = caption.tokens
            yield {
                adj_a: _match_case(tokens[adj_a].text, tokens[adj_b].lower),
                adj_b: _match_case(tokens[adj_b].text, tokens[adj_a].lower),
            }


def _only_coordination(caption: _Caption, left: int, right: int) -> bool:
    """Whether the words between two nouns just list them ("a man and a woman"): swapping such
    nouns says the same thing."""
    between = caption.words[left + 1 : right]
    return all(
        word in ("and", "or", "with") or word in _DETERMINERS or word in _ADJECTIVES
        for word in between
    )


def _colored(caption: _Caption, index: int) -> bool:
    return any(caption.words[i] in _COLORS for i in range(max(index - 2, 0), index))


def _swap_objects(caption: _Caption, rng: random.Random) -> Iterator[_Changes]:
    slots = [slot for slot in _object_slots(caption) if slot[1].category in _SWAP_GROUPS]
    for a, (index_a, noun_a, number_a) in enumerate(slots):
        for index_b, noun_b, number_b in slots[a + 1 :]:
            if _SWAP_GROUPS[noun_a.category] != _SWAP_GROUPS[noun_b.category]:
                continue
            if noun_a.tags & noun_b.tags or _only_coordination(caption, index_a, index_b):
                continue
            if not (noun_a.introduced and noun_b.introduced):
                continue
            # "a brown dog ... a man" must not become "a brown man": colour before people is skin.
            if _colored(caption, index_a) and noun_b.category == "person":
                continue
            if _colored(caption, index_b) and noun_a.category == "person":
                continue
            new_a, new_b = noun_b.form(number_a), noun_a.form(number_b)
            if new_a and new_b:
                tokens = caption.tokens
                yield {
                    index_a: _match_case(tokens[index_a].text, new_a),
                    index_b: _match_case(tokens[index_b].text, new_b),
                }


def _add_attribute(caption: _Caption, rng: random.Random) -> Iterator[_Changes]:
    present = _colors_in(caption)
    words = caption.words
    for index, noun, _number in _object_slots(caption):
        if noun.category not in _COLORABLE or index == 0 or not caption.joined(index - 1, index):
            continue
        # Only right after the determiner or a size word: "a small red ball", never "a wooden
        # red bench" or "a red red ball".
        previous = words[index - 1]
        if previous not in _DETERMINERS and previous not in _SIZES:
            continue
        if index > 1 and words[index - 2] in _COLORS:
            continue
        choices = [c for c in _palette(caption, index) if not (_COLORS[c] & present)]
        if choices:
            yield {index: f"{rng.choice(choices)} {caption.tokens[index].text}"}


_FAMILIES = {
    EditType.REPLACE_COLOR: _replace_color,
    EditType.REPLACE_NUMBER: _replace_number,
    EditType.REPLACE_OBJECT: _replace_object,
    EditType.REPLACE_RELATION: _replace_relation,
    EditType.SWAP_ATTRIBUTES: _swap_attributes,
    EditType.SWAP_OBJECTS: _swap_objects,
    EditType.ADD_ATTRIBUTE: _add_attribute,
}


# --- Public API ----------------------------------------------------------------------------------


# --- Chinese --------------------------------------------------------------------------------------
#
# Colours as tags, like the English ones: 黄 and 棕 both name a tan dog's coat, so neither replaces
# the other. A colour character is only replaced before what it colours (红衣服, 黑狗, 白色),
# never inside words that merely contain it (白天 "daytime", 红绿灯 "traffic light").

_ZH_COLORS: dict[str, frozenset[str]] = {
    "红": frozenset({"red"}),
    "粉": frozenset({"pink", "red"}),
    "橙": frozenset({"orange"}),
    "黄": frozenset({"yellow", "brown"}),
    "棕": frozenset({"brown", "yellow"}),
    "绿": frozenset({"green"}),
    "蓝": frozenset({"blue"}),
    "紫": frozenset({"purple"}),
    "黑": frozenset({"black"}),
    "白": frozenset({"white"}),
    "灰": frozenset({"gray"}),
}
_ZH_COLORED = "色衣狗猫帽裙球马发鞋裤车衫伞"
_ZH_COLOR = re.compile(f"([{''.join(_ZH_COLORS)}])(?=[{_ZH_COLORED}])")
# Counts before a measure word ("两只狗", "三个人"); 一个 is often an article, and changing it is
# still a count that no longer matches.
_ZH_NUMBERS = "一两三四五六"
_ZH_NUMBER = re.compile(f"([{_ZH_NUMBERS}])(?=[只个位名条匹头辆])")
# Whole nouns that cannot denote the same thing as their replacements. Characters that also
# start common unrelated words are left out as sources (马路 "road", 牛仔裤 "jeans").
_ZH_OBJECTS: dict[str, tuple[str, ...]] = {
    "男人": ("女人", "小孩"),
    "女人": ("男人", "小孩"),
    "男子": ("女子",),
    "女子": ("男子",),
    "男孩": ("女孩", "老人"),
    "女孩": ("男孩", "老人"),
    "老人": ("小孩", "年轻人"),
    "小孩": ("老人", "男人", "女人"),
    "孩子": ("老人", "男人", "女人"),
    "狗": ("猫", "马", "羊"),
    "猫": ("狗", "兔子"),
    "鸟": ("狗", "猫"),
}
_ZH_OBJECT = re.compile("|".join(sorted(_ZH_OBJECTS, key=len, reverse=True)))


def _zh_edit(caption: str, match: re.Match[str], new: str, edit_type: EditType) -> TextEdit:
    text = caption[: match.start()] + new + caption[match.end() :]
    return TextEdit(text=text, edit_type=edit_type, before=match.group(), after=new)


def _chinese_edits(caption: str, rng: random.Random) -> dict[EditType, list[TextEdit]]:
    present = frozenset().union(*(_ZH_COLORS[m.group(1)] for m in _ZH_COLOR.finditer(caption)))
    colors = []
    for match in _ZH_COLOR.finditer(caption):
        choices = [c for c, tags in _ZH_COLORS.items() if not tags & present]
        if choices:
            colors.append(_zh_edit(caption, match, rng.choice(choices), EditType.REPLACE_COLOR))
    numbers = [
        _zh_edit(
            caption,
            match,
            rng.choice([n for n in _ZH_NUMBERS if n != match.group(1)]),
            EditType.REPLACE_NUMBER,
        )
        for match in _ZH_NUMBER.finditer(caption)
    ]
    objects = []
    for match in _ZH_OBJECT.finditer(caption):
        choices = [o for o in _ZH_OBJECTS[match.group()] if o not in caption]
        if choices:
            objects.append(_zh_edit(caption, match, rng.choice(choices), EditType.REPLACE_OBJECT))
    return {
        EditType.REPLACE_COLOR: colors,
        EditType.REPLACE_NUMBER: numbers,
        EditType.REPLACE_OBJECT: objects,
    }


# --- Public API ----------------------------------------------------------------------------------

TEXT_EDIT_LANGUAGES = frozenset({"en", "zh"})
_HAN = re.compile("[\u4e00-\u9fff]")
_KANA = re.compile("[\u3040-\u30ff]")


def text_edits_available(language: str) -> bool:
    """Whether text edits have a lexicon for captions in ``language`` (a BCP 47 tag; "mul", a
    project of several languages, uses each caption's own, where it is one of them)."""
    primary = (language or "en").split("-")[0].lower()
    return primary in TEXT_EDIT_LANGUAGES or primary == "mul"


def caption_lexicon(caption: str, language: str) -> str | None:
    """The lexicon for this caption: the project's language, or for a project of several
    languages the caption's own (Chinese when it has Han and no kana, English when it is
    written in Latin letters and not confidently another language); None when there is none."""
    primary = (language or "en").split("-")[0].lower()
    if primary != "mul":
        return primary if primary in TEXT_EDIT_LANGUAGES else None
    if _HAN.search(caption) and not _KANA.search(caption):
        return "zh"
    if re.search("[A-Za-z]", caption) and _latin_is_english(caption):
        return "en"
    return None


# A caption in Latin letters is taken for English unless a language identifier is sure it is
# another language: German, French or Dutch captions are ASCII too, and an English word swap
# on them writes nonsense ("mit einem roten Rope"). Short captions identify poorly ("dog runs"
# reads as Danish at 0.38), so only a confident other verdict counts.
_OTHER_LANGUAGE_CONFIDENCE = 0.9


@functools.cache
def _language_identifier():
    # py3langid (BSD): langid.py's model (97 languages) inside the package, nothing downloaded.
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_pickled_model(MODEL_FILE, norm_probs=True)


def _latin_is_english(caption: str) -> bool:
    """Whether a caption written in Latin letters is English (see above); one call of
    langid.py's naive Bayes classifier (Lui & Baldwin, 2012), about 0.1 ms."""
    language, probability = _language_identifier().classify(caption)
    return language == "en" or float(probability) < _OTHER_LANGUAGE_CONFIDENCE


def text_edits(
    caption: str,
    *,
    rng: random.Random,
    limit: int | None = None,
    types: Collection[EditType] | None = None,
    language: str = "en",
) -> list[TextEdit]:
    """Edited versions of ``caption`` that should no longer describe its image.

    ``language`` picks the lexicon (:func:`caption_lexicon`); in a language without one the
    list is empty.

    At most one edit per slot (word, phrase or pair) and family, the replacement drawn from ``rng``;
    the families then take turns, in an order drawn from ``rng``, so a small ``limit`` still mixes
    them. The same caption and seed give the same list. Texts are unique and never the caption
    itself; the list is empty where nothing in the lexicon applies.
    """
    lexicon = caption_lexicon(caption, language)
    if lexicon is None:
        return []
    wanted = [t for t in EditType if types is None or t in types]
    per_family: list[list[TextEdit]] = []
    if lexicon == "zh":
        chinese = _chinese_edits(caption, rng)
        for edit_type in wanted:
            edits = chinese.get(edit_type, [])
            rng.shuffle(edits)
            per_family.append(edits)
    else:
        parsed = _Caption(caption, _tokenize(caption))
        for edit_type in wanted:
            edits = [
                edit
                for changes in _FAMILIES[edit_type](parsed, rng)
                if (edit := _render(parsed, changes, edit_type)) is not None
            ]
            rng.shuffle(edits)
            per_family.append(edits)
    rng.shuffle(per_family)
    result: list[TextEdit] = []
    seen = {caption}
    for edit in _round_robin(per_family):
        if edit.text in seen:
            continue
        seen.add(edit.text)
        result.append(edit)
        if limit is not None and len(result) >= limit:
            break
    return result


def _round_robin(lists: list[list[TextEdit]]) -> Iterable[TextEdit]:
    for position in range(max((len(edits) for edits in lists), default=0)):
        for edits in lists:
            if position < len(edits):
                yield edits[position]


def changed_words(original: str, edited: str) -> tuple[list[str], list[str]]:
    """The words (lower-cased) of ``original`` that an edit removed, and those it put in, in order.

    Captions of equal length compare word by word, so a swap reads as two replacements."""
    before = [m.group().lower() for m in _WORD.finditer(original)]
    after = [m.group().lower() for m in _WORD.finditer(edited)]
    if len(before) == len(after):
        pairs = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
        return [b for b, _ in pairs], [a for _, a in pairs]
    removed: list[str] = []
    added: list[str] = []
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            removed.extend(before[i1:i2])
            added.extend(after[j1:j2])
    return removed, added
