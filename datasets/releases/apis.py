"""REST API for releases: list and cut, detail with files, per-file downloads, pin/unpin."""

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import access
from datasets.models import Release, ReleaseStatus
from datasets.pagination import IdCursorPagination
from datasets.releases import services
from datasets.releases.balance import METHODS as BALANCE_METHODS
from datasets.releases.exporters import FORMATS
from datasets.releases.views import release_file_response


class ReleaseFileOutput(serializers.Serializer):
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    url = serializers.CharField()


class ReleaseOutput(serializers.ModelSerializer):
    name = serializers.CharField()
    percent = serializers.IntegerField()
    created_by = serializers.CharField(source="created_by.username", default=None)

    class Meta:
        model = Release
        fields = (
            "version",
            "name",
            "status",
            "stage",
            "progress_done",
            "progress_total",
            "percent",
            "options",
            "counts",
            "error",
            "snapshot_at",
            "created_by",
            "created_at",
            "finished_at",
            "pinned",
            "pruned_at",
            "pruned_reason",
        )


class ReleaseDetailOutput(ReleaseOutput):
    files = serializers.SerializerMethodField()
    files_error = serializers.SerializerMethodField()

    class Meta(ReleaseOutput.Meta):
        fields = (*ReleaseOutput.Meta.fields, "files", "files_error")

    def _listing(self, release: Release) -> tuple[list[dict], str]:
        if release.status != ReleaseStatus.READY:
            return [], ""
        try:
            return services.release_files(release=release), ""
        except services.ReleaseFilesError as exc:
            return [], str(exc)

    @extend_schema_field(ReleaseFileOutput(many=True))
    def get_files(self, release: Release) -> list[dict]:
        slug = release.project.slug
        return [
            {
                **entry,
                "url": reverse("api-release-file", args=[slug, release.version, entry["path"]]),
            }
            for entry in self._listing(release)[0]
        ]

    def get_files_error(self, release: Release) -> str:
        """Why a ready release's files cannot be listed (empty when they can)."""
        return self._listing(release)[1]


class ReleaseListApi(APIView):
    class ReleaseCutInput(serializers.Serializer):
        formats = serializers.ListField(
            child=serializers.ChoiceField(choices=list(FORMATS)), required=False
        )
        copy_images = serializers.BooleanField(default=False)
        balance_method = serializers.ChoiceField(choices=list(BALANCE_METHODS), required=False)
        balance_ratio = serializers.FloatField(min_value=0.001, required=False)
        shard_samples = serializers.IntegerField(min_value=1, required=False)

    @extend_schema(responses=ReleaseOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        project, _ = access.project_get(user=request.user, slug=slug, manager=True)
        paginator = IdCursorPagination()
        queryset = project.releases.select_related("created_by")
        page = paginator.paginate_queryset(queryset, request)
        return paginator.get_paginated_response(ReleaseOutput(page, many=True).data)

    @extend_schema(
        request=ReleaseCutInput,
        responses={201: ReleaseOutput},
        description="Cut a release: numbered now, built by a worker; poll its detail for "
        "progress. Parquet is always written.",
    )
    def post(self, request: Request, slug: str) -> Response:
        project, _ = access.project_get(user=request.user, slug=slug, manager=True)
        serializer = self.ReleaseCutInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            options = services.release_options(project=project, **serializer.validated_data)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        release = services.release_request(project=project, user=request.user, options=options)
        return Response(ReleaseOutput(release).data, status=status.HTTP_201_CREATED)


class ReleaseDetailApi(APIView):
    @extend_schema(responses=ReleaseDetailOutput)
    def get(self, request: Request, slug: str, version: int) -> Response:
        project, _ = access.project_get(user=request.user, slug=slug, manager=True)
        release = get_object_or_404(
            Release.objects.select_related("project", "created_by"),
            project=project,
            version=version,
        )
        return Response(ReleaseDetailOutput(release).data)


class ReleasePinApi(APIView):
    class ReleasePinInput(serializers.Serializer):
        pinned = serializers.BooleanField()

    @extend_schema(
        request=ReleasePinInput,
        responses={200: ReleaseOutput},
        description="Pin a release (kept forever, whatever CONCORD_RELEASES_KEEP says) or unpin "
        "it; a pruned release cannot be pinned (400).",
    )
    def post(self, request: Request, slug: str, version: int) -> Response:
        project, _ = access.project_get(user=request.user, slug=slug, manager=True)
        release = get_object_or_404(Release, project=project, version=version)
        serializer = self.ReleasePinInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            release = services.release_pin(
                release=release, pinned=serializer.validated_data["pinned"]
            )
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(ReleaseOutput(release).data)


class ReleaseFileApi(APIView):
    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            302: None,
        },
        description="One file of a ready release, only paths its manifest lists: streamed from "
        "local storage, or a redirect to a short-lived signed URL on object storage.",
    )
    def get(self, request: Request, slug: str, version: int, name: str) -> HttpResponse:
        return release_file_response(user=request.user, slug=slug, version=version, name=name)
