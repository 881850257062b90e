"""REST API of the data browser: the filtered pair list, and actions on a filtered selection.

The query parameters are the same as the pair list page's (datasets/browse/filters.py), so a
filtered view is one query for both; a bad one answers 400 with ``{param: [message]}``.
"""

from urllib.parse import urlencode

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


def _spec_or_400(request: Request) -> filters.FilterSpec | Response:
    try:
        return filters.filter_parse(request.query_params.dict())
    except filters.FilterError as exc:
        return Response({exc.param: [exc.message]}, status=status.HTTP_400_BAD_REQUEST)


class PairOutput(serializers.Serializer):
    id = serializers.IntegerField()
    image_id = serializers.IntegerField()
    caption_id = serializers.IntegerField()
    caption = serializers.CharField(source="caption.text")
    kind = serializers.CharField()
    label = serializers.IntegerField(allow_null=True)
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
        return Response({"next": next_url, "results": PairOutput(page.pairs, many=True).data})


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
        description="Apply an action to every pair the query's filter selects (at most "
        f"{services.MAX_SELECTION}; more is a 400): one more judgment, gold with the current "
        "label (or out of gold again), to a manager for adjudication, excluded from (or included "
        "again in) releases.",
    )
    def post(self, request: Request, slug: str) -> Response:
        project, _ = access.api_project(request)
        spec = _spec_or_400(request)
        if isinstance(spec, Response):
            return spec
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
