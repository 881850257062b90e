"""REST API of the data browser: the filtered pair list, and actions on a filtered selection.

The query parameters are the same as the pair list page's (datasets/browse/filters.py), so a
filtered view is one query for both; a bad one answers 400 with ``{param: [message]}``.
Actions take their filter in the query string only, and their body holds ``action`` alone: a
filter (or anything else) in the body would otherwise be dropped silently and the action would
run on the whole project, so any other body field is a 400 naming it.
"""

from urllib.parse import urlencode

from django.core.handlers.wsgi import get_bytes_from_wsgi
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import access
from datasets.browse import filters, selectors, services

API_PAGE_SIZE = 100
FILTER_PARAMETERS = [
    OpenApiParameter(name, OpenApiTypes.STR, required=False) for name in sorted(filters.PARAMS)
]


# Why a body field other than ``action`` is refused (tests assert on these).
FILTER_IN_BODY = (
    "Filters go in the query string (…/pairs/actions/?{name}=…), not in the body; the body "
    "holds only 'action'."
)
UNKNOWN_BODY_FIELD = "Unknown field; the body holds only 'action' (filters go in the query string)."
CURSOR_IN_ACTION = (
    "Actions apply to the whole filtered selection, not to one page: leave out cursor."
)


def _spec_or_400(request: Request) -> filters.FilterSpec | Response:
    try:
        # The raw query string, not Django's lenient QueryDict: a name given twice or bytes that
        # are not UTF-8 are refused rather than resolved to the last value or to U+FFFD.
        raw = get_bytes_from_wsgi(request.META, "QUERY_STRING", "")
        return filters.filter_parse(filters.query_parse(raw))
    except filters.FilterError as exc:
        return Response({exc.param: [exc.message]}, status=status.HTTP_400_BAD_REQUEST)


def _body_errors(data) -> dict[str, list[str]]:
    """Every body field but ``action``, each with why it is refused."""
    if not hasattr(data, "keys"):
        return {}
    errors = {}
    for name in data:
        if hasattr(data, "getlist") and len(data.getlist(name)) > 1:  # a form body
            errors[filters.printable(str(name))] = [filters.GIVEN_TWICE]
            continue
        if name == "action":
            continue
        shown = filters.printable(str(name)) or filters.NAMELESS
        known = name in filters.PARAMS
        errors[shown] = [FILTER_IN_BODY.format(name=shown) if known else UNKNOWN_BODY_FIELD]
    return errors


class PairOutput(serializers.Serializer):
    id = serializers.IntegerField()
    image_id = serializers.IntegerField()
    caption_id = serializers.IntegerField()
    caption = serializers.CharField(source="caption.text")
    kind = serializers.CharField()
    label = serializers.IntegerField(allow_null=True)
    # ``label`` stays 0/1 for existing clients; ``label_name`` is the same in the label filter's
    # words (match, no_match, none), and ``gold`` says whether the pair is a gold item.
    label_name = serializers.SerializerMethodField()
    gold = serializers.SerializerMethodField()
    confidence = serializers.FloatField(allow_null=True)
    split = serializers.CharField()
    status = serializers.SerializerMethodField()
    agreement = serializers.SerializerMethodField()
    score = serializers.SerializerMethodField()
    excluded_from_releases = serializers.BooleanField()

    def _item(self, pair):
        return getattr(pair, "item_label", None) if hasattr(pair, "item_label") else None

    def get_status(self, pair) -> str:
        item = self._item(pair)
        if item is None:
            return "unjudged"
        if item.adjudicated_label is not None:
            return "adjudicated"
        return "waiting" if item.needs_manager else item.status

    def get_label_name(self, pair) -> str:
        return {1: "match", 0: "no_match"}.get(pair.label, "none")

    def get_gold(self, pair) -> bool:
        return pair.pk in self.context.get("gold_ids", ())

    def get_agreement(self, pair) -> float | None:
        item = self._item(pair)
        return None if item is None else item.mv_share

    def get_score(self, pair) -> float | None:
        proposal = getattr(pair, "proposal", None) if hasattr(pair, "proposal") else None
        return None if proposal is None else proposal.score


class PairPageOutput(serializers.Serializer):
    next = serializers.CharField(allow_null=True)
    results = PairOutput(many=True)


class PairListApi(APIView):
    project_need = access.MANAGE

    @extend_schema(
        parameters=FILTER_PARAMETERS,
        responses={200: PairPageOutput},
        description="One keyset page (100) of the project's pairs, filtered and sorted on the "
        "server; ``next`` is the URL of the next page or null. A bad parameter answers 400 "
        "naming it.",
    )
    def get(self, request: Request, slug: str) -> Response:
        project, _ = access.api_project(request)
        spec = _spec_or_400(request)
        if isinstance(spec, Response):
            return spec
        try:
            page = selectors.pairs_page(project=project, spec=spec, limit=API_PAGE_SIZE)
        except filters.FilterError as exc:
            return Response({exc.param: [exc.message]}, status=status.HTTP_400_BAD_REQUEST)
        next_url = None
        if page.next_cursor is not None:
            query = spec.query(cursor=page.next_cursor)
            next_url = request.build_absolute_uri(
                reverse("api-pairs", args=[project.slug]) + "?" + urlencode(query)
            )
        gold_ids = selectors.gold_pair_ids(pair_ids=[pair.pk for pair in page.pairs])
        rows = PairOutput(page.pairs, many=True, context={"gold_ids": gold_ids}).data
        return Response({"next": next_url, "results": rows})


class PairActionApi(APIView):
    project_need = access.MANAGE

    class ActionInput(serializers.Serializer):
        action = serializers.ChoiceField(choices=sorted(services.ACTIONS))

    class ActionOutput(serializers.Serializer):
        action = serializers.CharField()
        done = serializers.IntegerField()
        skipped = serializers.DictField(child=serializers.IntegerField())
        summary = serializers.CharField()

    @extend_schema(
        parameters=FILTER_PARAMETERS,
        request=ActionInput,
        responses={200: ActionOutput},
        description="Apply an action to every pair the query string's filter selects (at most "
        f"{services.MAX_SELECTION}; more is a 400): one more judgment, gold with the current "
        "label (or out of gold again), to a manager for adjudication, excluded from (or included "
        "again in) releases. The filter goes in the query string only; the body holds only "
        "``action``, and any other body field (a filter included) is a 400 naming it. Actions "
        "apply to the whole filtered selection, never to one page: a ``cursor`` is a 400.",
    )
    def post(self, request: Request, slug: str) -> Response:
        project, _ = access.api_project(request)
        spec = _spec_or_400(request)
        if isinstance(spec, Response):
            return spec
        if spec.cursor is not None:
            return Response({"cursor": [CURSOR_IN_ACTION]}, status=status.HTTP_400_BAD_REQUEST)
        if errors := _body_errors(request.data):
            return Response(errors, status=status.HTTP_400_BAD_REQUEST)
        serializer = self.ActionInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            ids = selectors.pair_ids(project=project, spec=spec, limit=services.MAX_SELECTION + 1)
            outcome = services.selection_act(
                project=project,
                pair_ids=ids,
                action=serializer.validated_data["action"],
                by=request.user,
            )
        except filters.FilterError as exc:
            return Response({exc.param: [exc.message]}, status=status.HTTP_400_BAD_REQUEST)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(
            {
                "action": outcome.action,
                "done": outcome.done,
                "skipped": outcome.skipped,
                "summary": outcome.summary,
            }
        )
