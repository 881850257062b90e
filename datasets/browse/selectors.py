"""Read-side queries of the browsing pages, written to stay fast on large projects.

The data browser's filters (datasets/browse/filters.py gives the spec) become one queryset
here, shared by the pair list page, the image grid, the pair list API and the actions on a
selection. Pages are keyset pages: the cursor holds the last row's sort value and id, so page
10,000 costs what page 1 does; bench/browse.py measures every filter and sort on a million pairs.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    Expression,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce
from django.db.models.lookups import IsNull

from annotate.models import ChallengeMark, ItemLabel, ItemStatus, Judgment, Task, TaskKind
from datasets.browse.filters import (
    MODEL_MATCH_SCORE,
    Cursor,
    FilterError,
    FilterSpec,
    Range,
    search_terms,
)
from datasets.models import (
    Caption,
    CaptionFlag,
    ClusterMember,
    DuplicateCluster,
    Image,
    ImageFlag,
    Membership,
    Pair,
    Project,
)
from training.negatives.models import Proposal

NO_SUCH_ANNOTATOR = "No member of this project has that user name."
# A search matching at most this many captions filters by their ids (found on the GIN index
# first); one matching more is common enough that walking pairs in order finds a page quickly.
SEARCH_IDS_MAX = 10_000
# The column behind each sort key (nullable ones show only the rows that have a value), and the
# pair id to break ties with, taken from the same table so that one index, (value, pair id),
# gives the whole order.
SORT_COLUMNS = {
    "id": ("id", "id"),
    "confidence": ("confidence", "id"),
    "agreement": ("item_label__mv_share", "item_label__pair_id"),
    "score": ("proposal__score", "proposal__pair_id"),
}


@dataclass(frozen=True)
class ImagePage:
    images: list[Image]
    next_cursor: Cursor | None  # where the next page starts, or None on the last page


@dataclass(frozen=True)
class PairPage:
    pairs: list[Pair]
    next_cursor: Cursor | None


@dataclass(frozen=True)
class ProjectCounts:
    images: int
    captions: int
    members: int


def project_counts(*, project: Project) -> ProjectCounts:
    return ProjectCounts(
        images=project.images.count(),
        captions=Caption.objects.filter(image__project=project).count(),
        members=project.memberships.count(),
    )


def annotator_id(*, project: Project, username: str) -> int:
    """The user id of a member of ``project`` by user name; FilterError("annotator") if none."""
    found = (
        Membership.objects.filter(project=project, user__username=username)
        .values_list("user_id", flat=True)
        .first()
    )
    if found is None:
        raise FilterError("annotator", NO_SUCH_ANNOTATOR)
    return found


def pairs_filtered(*, project: Project, spec: FilterSpec) -> QuerySet[Pair]:
    """The pairs of ``project`` that ``spec`` selects, unordered and uncut (cursor ignored).

    Raises FilterError("annotator") for an annotator who is not a member.
    """
    queryset = Pair.objects.filter(image__project=project)
    for condition in _pair_conditions(project=project, spec=spec):
        queryset = queryset.filter(condition)
    if spec.captions.is_set:
        queryset = queryset.annotate(caption_count=_caption_count("image")).filter(
            _range_q("caption_count", spec.captions)
        )
    if spec.q:
        found = _search_ids(_captions_matching(spec.q), "id")
        if isinstance(found, list):
            queryset = queryset.filter(_AnyOf(F("caption_id"), found))
        elif connection.vendor == "postgresql":
            # Many match: test each pair's caption as the pairs are walked in the page's order
            # (its stored vector, no parsing), rather than collect every match first.
            queryset = queryset.filter(_CaptionTextMatches(spec.q, caption="caption__text"))
        else:
            queryset = queryset.filter(caption__in=found)
    return queryset


def pair_ids(*, project: Project, spec: FilterSpec, limit: int) -> list[int]:
    """The ids of at most ``limit`` pairs ``spec`` selects, in id order (for an action: asking
    one more than the action's limit tells whether the selection is over it)."""
    queryset = pairs_filtered(project=project, spec=spec).order_by("pk")
    return list(queryset.values_list("pk", flat=True)[:limit])


def pairs_page(*, project: Project, spec: FilterSpec, limit: int) -> PairPage:
    """One keyset page of the pairs ``spec`` selects, in its sort, with what the list shows."""
    queryset = pairs_filtered(project=project, spec=spec).select_related(
        "image", "caption", "item_label", "proposal"
    )
    queryset = _sorted_after(queryset, sort=spec.sort, cursor=spec.cursor)
    with _keyset_plan():
        pairs = list(queryset[: limit + 1])
    has_more = len(pairs) > limit
    pairs = pairs[:limit]
    return PairPage(pairs=pairs, next_cursor=_cursor(pairs[-1], spec.sort) if has_more else None)


def gold_pair_ids(*, pair_ids: list[int]) -> set[int]:
    """Which of ``pair_ids`` are gold items (their verify task carries the answer): one query
    for a page of rows."""
    return set(
        Task.objects.filter(pair_id__in=pair_ids, kind=TaskKind.VERIFY, is_gold=True)
        .order_by()
        .values_list("pair_id", flat=True)
    )


def images_filtered(*, project: Project, spec: FilterSpec) -> QuerySet[Image]:
    """The images of ``project`` that ``spec`` selects: image-level conditions (text of any
    caption, flags, duplicates, provenance, caption count) on the image, pair-level ones
    (label, status, scores, annotator…) by having at least one pair that meets them all."""
    queryset = project.images.all()
    if spec.q:
        queryset = queryset.filter(Exists(_captions_matching(spec.q).filter(image=OuterRef("pk"))))
    if spec.flagged:
        flagged = _image_flagged("pk") | Exists(
            CaptionFlag.objects.filter(caption__image=OuterRef("pk"), overridden_at__isnull=True)
        )
        queryset = queryset.filter(flagged if spec.flagged == "yes" else ~flagged)
    queryset = queryset.filter(
        *_provenance_conditions(project=project, spec=spec, image="pk", prefix="")
    )
    if spec.captions.is_set:
        queryset = queryset.annotate(caption_count=_caption_count("pk")).filter(
            _range_q("caption_count", spec.captions)
        )
    pair_conditions = _pair_level_conditions(project=project, spec=spec)
    if pair_conditions:
        pairs = Pair.objects.filter(image=OuterRef("pk"))
        for condition in pair_conditions:
            pairs = pairs.filter(condition)
        queryset = queryset.filter(Exists(pairs))
    return queryset


def images_page(*, project: Project, spec: FilterSpec, limit: int) -> ImagePage:
    """One keyset page of the images ``spec`` selects, in id order, with their captions."""
    queryset = images_filtered(project=project, spec=spec).prefetch_related(
        Prefetch("captions", queryset=Caption.objects.order_by("id"))
    )
    descending = spec.sort == "-id"
    queryset = queryset.order_by("-id" if descending else "id")
    if spec.cursor is not None:
        after = {"id__lt" if descending else "id__gt": spec.cursor.id}
        queryset = queryset.filter(**after)
    with _keyset_plan():
        images = list(queryset[: limit + 1])
    has_more = len(images) > limit
    images = images[:limit]
    next_cursor = Cursor(sort=spec.sort, value=None, id=images[-1].pk) if has_more else None
    return ImagePage(images=images, next_cursor=next_cursor)


# --- conditions -----------------------------------------------------------------------------


def _pair_conditions(*, project: Project, spec: FilterSpec) -> list[Q]:
    conditions = _pair_level_conditions(project=project, spec=spec, bound=_id_bound(spec))
    if spec.flagged:
        flagged = _image_flagged("image") | Exists(
            CaptionFlag.objects.filter(caption=OuterRef("caption"), overridden_at__isnull=True)
        )
        conditions.append(flagged if spec.flagged == "yes" else ~flagged)
    conditions += _provenance_conditions(
        project=project, spec=spec, image="image", prefix="image__"
    )
    return conditions


def _id_bound(spec: FilterSpec) -> Q:
    """The id sort's cursor as a condition on the subqueries' pair ids (redundant with the one
    on the pairs, which PostgreSQL does not carry across the join by itself: without it a page
    deep in the pairs has it walk a label or proposal index from the far end to the cursor)."""
    if spec.cursor is None or spec.sort.lstrip("-") != "id":
        return Q()
    return Q(pair__lt=spec.cursor.id) if spec.sort == "-id" else Q(pair__gt=spec.cursor.id)


def _pair_level_conditions(
    *, project: Project, spec: FilterSpec, bound: Q | None = None
) -> list[Q]:
    """Conditions on a pair's own columns and what hangs off it (label, tasks, proposal);
    ``bound`` narrows the subqueries' pair ids (see _id_bound)."""
    out: list[Q] = []
    bound = bound or Q()

    def label_row(condition: Q) -> Q:
        return _label_row(condition & bound)

    def proposal(condition: Q) -> Q:
        return _proposal(condition & bound)

    if spec.label:
        out.append(
            Q(label__isnull=True)
            if spec.label == "none"
            else Q(label=1 if spec.label == "match" else 0)
        )
    if spec.status:
        out.append(_status_q(spec.status, label_row))
    if spec.confidence.is_set:
        out.append(_range_q("confidence", spec.confidence))
    if spec.agreement.is_set:
        out.append(label_row(_range_q("mv_share", spec.agreement)))
    if spec.split:
        out.append(Q(split="" if spec.split == "none" else spec.split))
    if spec.kind:
        out.append(Q(kind=spec.kind))
    if spec.score.is_set:
        out.append(proposal(_range_q("score", spec.score)))
    if spec.disagree:
        # One EXISTS comparing the score with the outer pair's label (two ORed EXISTS would be
        # evaluated row by row as subplans).
        said_match = Q(score__gte=MODEL_MATCH_SCORE)
        crowd = 0 if spec.disagree == "yes" else 1
        out.append(
            Q(
                Exists(
                    Proposal.objects.annotate(
                        crowd=ExpressionWrapper(OuterRef("label"), output_field=IntegerField())
                    ).filter(
                        (said_match & Q(crowd=crowd)) | (~said_match & Q(crowd=1 - crowd)),
                        # Without a score the model said nothing: no disagreement, no agreement.
                        Q(score__isnull=False),
                        bound,
                        pair=OuterRef("pk"),
                    )
                )
            )
        )
    if spec.excluded:
        out.append(Q(excluded_from_releases=spec.excluded == "yes"))
    if spec.gold:
        out.append(_gold_condition(project=project, gold=spec.gold == "yes", bound=bound))
    if spec.annotator:
        user_id = annotator_id(project=project, username=spec.annotator)
        out.append(_annotated_by(project=project, user_id=user_id))
    return out


def _gold_condition(*, project: Project, gold: bool, bound: Q) -> Q:
    """Gold items (their verify task carries the answer), or (``gold`` False) the others.

    A project has few gold items (at most SEARCH_IDS_MAX, nearly always), read as a list from
    the queue's gold index; as EXISTS, a page of "gold" walked pairs in order asking each, all
    million of them when there are none."""
    tasks = Task.objects.filter(project=project, kind=TaskKind.VERIFY, is_gold=True).order_by()
    ids = list(tasks.values_list("pair_id", flat=True)[: SEARCH_IDS_MAX + 1])
    if len(ids) <= SEARCH_IDS_MAX:
        condition = Q(_AnyOf(F("pk"), sorted(ids)))
    else:
        condition = Q(Exists(tasks.filter(bound, pair=OuterRef("pk"))))
    return condition if gold else ~condition


def _annotated_by(*, project: Project, user_id: int) -> Q:
    """Pairs the member judged: a verify judgment on the pair's task, or a mark on it as a
    challenge option.

    An annotator with few judgments (at most SEARCH_IDS_MAX, in all projects) gives the pair
    ids as a list, from which PostgreSQL picks the page. One with many is asked row by row as
    the pairs are walked in the page's order, which finds a page within a few thousand rows
    when they judged more than one pair in a few hundred of this project's (the case that was
    slow). Not bounded: an annotator with many judgments elsewhere and a handful here makes a
    page walk most of the project's pairs. These are scalar subqueries (not
    EXISTS), which PostgreSQL cannot turn into a hashed subplan: that one read every judgment
    of the annotator and every task of the database on each page (60–100 ms on 300,000 tasks).
    """
    # Whether the list is short enough, from the annotator's judgments in every project (an
    # index-only count, 1–2 ms); the list itself then costs a join per judgment.
    judgments = Judgment.objects.filter(annotator_id=user_id).order_by()
    if judgments.values("pk")[: SEARCH_IDS_MAX + 1].count() <= SEARCH_IDS_MAX:
        judged = judgments.filter(task__project=project).values_list("task__pair_id", flat=True)
        marked = ChallengeMark.objects.filter(
            judgment__task__project=project, judgment__annotator_id=user_id
        ).values_list("option__pair_id", flat=True)
        return Q(_AnyOf(F("pk"), sorted({*judged, *marked.order_by()})))
    first = Judgment.objects.filter(task__pair=OuterRef("pk"), annotator_id=user_id)
    first_mark = ChallengeMark.objects.filter(
        option__pair=OuterRef("pk"), judgment__annotator_id=user_id
    )
    return Q(IsNull(Subquery(first.values("pk")[:1]), False)) | Q(
        IsNull(Subquery(first_mark.values("pk")[:1]), False)
    )


class _AnyOf(Expression):
    """``expression = ANY(values)`` with the values as one array parameter (PostgreSQL), or
    ``expression IN (…)`` elsewhere. One parameter instead of thousands: Django renders and the
    driver adapts one list, and the plan is the same."""

    conditional = True

    def __init__(self, expression, values: list[int]):
        super().__init__(output_field=BooleanField())
        self.expression = expression
        self.values = list(values)

    def get_source_expressions(self):
        return [self.expression]

    def set_source_expressions(self, exprs):
        (self.expression,) = exprs

    def as_sql(self, compiler, connection):
        sql, params = compiler.compile(self.expression)
        if connection.vendor == "postgresql":
            # Typed as the column: an untyped list of small ints is sent as int2[]/numeric[],
            # which turns the hashed `= ANY` filter into a cast per row (50 times slower).
            array_type = self.expression.output_field.db_type(connection)
            return f"{sql} = ANY(%s::{array_type}[])", [*params, self.values]
        if not self.values:
            return "1 = 0", list(params)
        marks = ", ".join(["%s"] * len(self.values))
        return f"{sql} IN ({marks})", [*params, *self.values]


class _CaptionTextMatches(Expression):
    """A caption's stored search vector (``datasets_caption.search_vector``, a generated column
    that migration 0014 adds on PostgreSQL only, so not a model field) against a web-search
    query in the "simple" configuration. Holds the caption table's alias so that it follows
    the query when Django nests it as a subquery."""

    conditional = True

    def __init__(self, text: str, caption: str = "text", alias: str | None = None):
        super().__init__(output_field=BooleanField())
        self.text = text
        self.caption = caption  # the path to the caption's text from the query's model
        self.alias = alias

    def resolve_expression(self, query=None, *args, **kwargs):
        if self.alias is not None:
            # Resolved in its own query already; an outer query resolving its subqueries
            # again must not rebind it (relabeled_clone follows the subquery's aliases).
            return self
        clone = self.copy()
        # The caption table's alias in this query (joined if the path crosses a relation).
        clone.alias = F(self.caption).resolve_expression(query, *args, **kwargs).alias
        return clone

    def relabeled_clone(self, change_map):
        clone = self.copy()
        clone.alias = change_map.get(self.alias, self.alias)
        return clone

    def as_sql(self, compiler, connection):
        table = compiler.quote_name_unless_alias(self.alias)
        return (
            f"{table}.search_vector @@ websearch_to_tsquery('simple'::regconfig, %s)",
            [self.text],
        )


def _status_q(status: str, label_row=None) -> Q:
    label_row = label_row or _label_row
    if status == "unjudged":
        return ~label_row(Q())
    if status == "adjudicated":
        return label_row(Q(adjudicated_label__isnull=False))
    open_item = Q(adjudicated_label__isnull=True)
    if status == "waiting":
        return label_row(open_item & Q(needs_manager=True))
    return label_row(open_item & Q(status=ItemStatus(status)))


# Conditions on a pair's label row or proposal are EXISTS subqueries, not joins: with a join,
# PostgreSQL walks the joined table's pair index from its end to reach a cursor deep in the
# pairs (180,000 rows for a page half-way through a million), and estimates LEFT JOIN … IS
# NULL at one row and hashes both tables; semi- and anti-joins it plans from the pairs' side.
def _label_row(condition: Q) -> Q:
    return Q(Exists(ItemLabel.objects.filter(condition, pair=OuterRef("pk"))))


def _proposal(condition: Q) -> Q:
    return Q(Exists(Proposal.objects.filter(condition, pair=OuterRef("pk"))))


def _provenance_conditions(
    *, project: Project, spec: FilterSpec, image: str, prefix: str
) -> list[Q]:
    out: list[Q] = []
    if spec.source:
        out.append(Q(**{f"{prefix}source": spec.source}))
    if spec.license:
        out.append(Q(**{f"{prefix}license_name": "" if spec.license == "none" else spec.license}))
    if spec.duplicate:
        out.append(_duplicate_condition(project=project, which=spec.duplicate, image=image))
    return out


def _duplicate_condition(*, project: Project, which: str, image: str) -> Q:
    """Images in a duplicate cluster (``duplicate``: not its canonical), canonical of one, or in
    none (``unique``).

    A project with few cluster members (at most SEARCH_IDS_MAX, nearly always: a few percent of
    its images) gives their image ids as lists on PostgreSQL. As EXISTS, a page deep in the
    canonical images had the planner hash-join every image of the project with the clusters
    (100–240 ms on 200,000 images); with the list it reads the pairs of those images alone.
    """
    member = Exists(ClusterMember.objects.filter(image=OuterRef(image)))
    canonical = Exists(DuplicateCluster.objects.filter(canonical=OuterRef(image)))
    if connection.vendor == "postgresql":
        members = ClusterMember.objects.filter(cluster__project=project).order_by()
        member_ids = list(members.values_list("image_id", flat=True)[: SEARCH_IDS_MAX + 1])
        if len(member_ids) <= SEARCH_IDS_MAX:
            canonical_ids = set(
                DuplicateCluster.objects.filter(project=project).values_list(
                    "canonical_id", flat=True
                )
            )
            member = Q(_AnyOf(F(image), sorted(member_ids)))
            canonical = Q(_AnyOf(F(image), sorted(canonical_ids)))
            duplicates = sorted(set(member_ids) - canonical_ids)
            return {
                "unique": ~member,
                "canonical": canonical,
                "duplicate": Q(_AnyOf(F(image), duplicates)),
            }[which]
    return {
        "unique": ~Q(member),
        "canonical": Q(canonical),
        "duplicate": Q(member) & ~Q(canonical),
    }[which]


def _image_flagged(image: str) -> Q:
    return Q(Exists(ImageFlag.objects.filter(image=OuterRef(image), overridden_at__isnull=True)))


def _captions_matching(text: str) -> QuerySet[Caption]:
    """Captions whose text matches ``text``: PostgreSQL full-text search (web-search syntax:
    words, "phrases", -not, or) on the stored vector and GIN index of migration 0014, in the
    language-neutral
    "simple" configuration since captions come in any language; elsewhere every word (or
    quoted phrase) as a case-insensitive substring, and every ``-word`` excluded as a whole word
    (as PostgreSQL's lexemes are: ``-red`` keeps "tired"). A query of exclusions alone keeps
    every caption without them, as PostgreSQL does."""
    if connection.vendor == "postgresql":
        return Caption.objects.filter(_CaptionTextMatches(text))
    include, exclude = search_terms(text)
    captions = Caption.objects.all()
    for word in include:
        captions = captions.filter(text__icontains=word)
    for word in exclude:
        captions = captions.exclude(text__iregex=r"(^|\W)" + re.escape(word) + r"(\W|$)")
    return captions


def _search_ids(captions: QuerySet[Caption], column: str):
    """``column`` of the matching captions: a list when there are few (the planner then starts
    from them), else the subquery itself."""
    if connection.vendor != "postgresql":
        return captions.values(column)
    found = list(captions.order_by().values_list(column, flat=True)[: SEARCH_IDS_MAX + 1])
    return found if len(found) <= SEARCH_IDS_MAX else captions.values(column)


@contextmanager
def _keyset_plan() -> Iterator[None]:
    """Run a keyset page's query without merge joins on PostgreSQL. With LIMIT and a cursor deep
    in the order, the planner likes a merge join with a joined table's index (item labels,
    proposals), which reads that index from its start up to the cursor (360,000 rows for a page
    half-way through a million); nested loops read the 50 rows the page needs."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_mergejoin = off")
        yield


def _caption_count(image: str):
    counts = (
        Caption.objects.filter(image=OuterRef(image))
        .order_by()
        .values("image")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), 0)


def _range_q(field: str, bounds: Range) -> Q:
    condition = Q()
    if bounds.low is not None:
        condition &= Q(**{f"{field}__gte": bounds.low})
    if bounds.high is not None:
        condition &= Q(**{f"{field}__lte": bounds.high})
    return condition


# --- sorting and paging ---------------------------------------------------------------------


def _sorted_after(queryset: QuerySet[Pair], *, sort: str, cursor: Cursor | None) -> QuerySet:
    descending = sort.startswith("-")
    column, tie = SORT_COLUMNS[sort.lstrip("-")]
    if column == "id":
        queryset = queryset.order_by("-id" if descending else "id")
        if cursor is not None:
            queryset = queryset.filter(**{"id__lt" if descending else "id__gt": cursor.id})
        return queryset
    # Rows without the value have no place in this order; the page says so. The tie column
    # equals the pair's id wherever the value is set (same row of the joined table).
    queryset = queryset.annotate(sort_value=F(column), sort_tie=F(tie)).filter(
        sort_value__isnull=False
    )
    queryset = queryset.order_by(
        "-sort_value" if descending else "sort_value", "-sort_tie" if descending else "sort_tie"
    )
    if cursor is not None and cursor.value is not None:
        # The first conjunct bounds the index range; the second breaks ties by id.
        if descending:
            queryset = queryset.filter(
                Q(sort_value__lte=cursor.value)
                & (Q(sort_value__lt=cursor.value) | Q(sort_tie__lt=cursor.id))
            )
        else:
            queryset = queryset.filter(
                Q(sort_value__gte=cursor.value)
                & (Q(sort_value__gt=cursor.value) | Q(sort_tie__gt=cursor.id))
            )
    return queryset


def _cursor(pair: Pair, sort: str) -> Cursor:
    value = getattr(pair, "sort_value", None)
    return Cursor(sort=sort, value=None if value is None else float(value), id=pair.pk)
