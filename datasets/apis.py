"""REST API for projects, images and captions: one class per operation, nested serializers."""

from django.core.exceptions import PermissionDenied
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import access, projects, releases
from datasets.balance import METHODS as BALANCE_METHODS
from datasets.captions import CaptionError
from datasets.exporters import FORMATS
from datasets.ingest import caption_create, upload_ingest
from datasets.models import Caption, Image, Project, Release, Source
from datasets.pagination import IdCursorPagination
from datasets.projects import PROJECT_SETTINGS, settings_problems
from datasets.release_views import release_file_response

NO_FILES = "Send one or more files in the multipart field 'files'."


class ProjectOutput(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ("id", "slug", *PROJECT_SETTINGS, "created_at")


class ProjectInput(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = PROJECT_SETTINGS

    def validate(self, attrs):
        current = self.instance or Project()
        values = {name: attrs.get(name, getattr(current, name)) for name in PROJECT_SETTINGS}
        if problems := settings_problems(values=values):
            raise serializers.ValidationError(problems)
        return attrs


class CaptionOutput(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username", default=None)

    class Meta:
        model = Caption
        fields = ("id", "image", "text", "text_raw", "source", "author", "created_at")


class ImageOutput(serializers.ModelSerializer):
    file_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    uploaded_by = serializers.CharField(source="uploaded_by.username", default=None)

    class Meta:
        model = Image
        fields = (
            "id",
            "sha256",
            "width",
            "height",
            "format",
            "size_bytes",
            "source",
            "original_name",
            "source_url",
            "license_name",
            "license_url",
            "uploaded_by",
            "created_at",
            "file_url",
            "thumbnail_url",
        )

    def get_file_url(self, image: Image) -> str:
        return reverse("image-file", kwargs={"slug": self.context["slug"], "image_id": image.pk})

    def get_thumbnail_url(self, image: Image) -> str:
        return reverse(
            "image-thumbnail", kwargs={"slug": self.context["slug"], "image_id": image.pk}
        )


class ProjectListApi(APIView):
    @extend_schema(responses=ProjectOutput(many=True))
    def get(self, request: Request) -> Response:
        paginator = IdCursorPagination()
        page = paginator.paginate_queryset(access.projects_visible(user=request.user), request)
        return paginator.get_paginated_response(ProjectOutput(page, many=True).data)

    @extend_schema(request=ProjectInput, responses={201: ProjectOutput})
    def post(self, request: Request) -> Response:
        if not access.can_create_projects(request.user):
            raise PermissionDenied(access.CANNOT_CREATE_PROJECTS)
        serializer = ProjectInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = projects.project_create(creator=request.user, **serializer.validated_data)
        return Response(ProjectOutput(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    @extend_schema(responses=ProjectOutput)
    def get(self, request: Request, slug: str) -> Response:
        project, _ = access.project_get(user=request.user, slug=slug)
        return Response(ProjectOutput(project).data)

    @extend_schema(request=ProjectInput, responses=ProjectOutput)
    def patch(self, request: Request, slug: str) -> Response:
        project, _ = access.project_get(user=request.user, slug=slug, manager=True)
        serializer = ProjectInput(instance=project, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        projects.project_update(project=project, **serializer.validated_data)
        return Response(ProjectOutput(project).data)


class ImageListApi(APIView):
    parser_classes = (MultiPartParser, FormParser)

    class UploadResult(serializers.Serializer):
        name = serializers.CharField()
        status = serializers.ChoiceField(choices=["accepted", "duplicate", "rejected"])
        reason = serializers.CharField()
        image_id = serializers.IntegerField(allow_null=True)

    @extend_schema(responses=ImageOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        project, _ = access.project_get(user=request.user, slug=slug, manager=True)
        paginator = IdCursorPagination()
        queryset = project.images.select_related("uploaded_by")
        page = paginator.paginate_queryset(queryset, request)
        data = ImageOutput(page, many=True, context={"slug": slug}).data
        return paginator.get_paginated_response(data)

    @extend_schema(
        request=inline_serializer(
            "ImageUpload", {"files": serializers.ListField(child=serializers.FileField())}
        ),
        responses={201: UploadResult(many=True), 200: UploadResult(many=True)},
        description="Upload images (or zip archives of images). Each file is accepted, "
        "recognised as a duplicate, or rejected with its reason; one bad file never fails "
        "the others. 201 when at least one image was added.",
    )
    def post(self, request: Request, slug: str) -> Response:
        project, _ = access.project_get(user=request.user, slug=slug, manager=True)
        uploads = request.FILES.getlist("files") or request.FILES.getlist("file")
        if not uploads:
            return Response({"detail": NO_FILES}, status=status.HTTP_400_BAD_REQUEST)
        results = []
        for upload in uploads:
            results.extend(
                upload_ingest(
                    project=project,
                    name=upload.name,
                    fileobj=upload,
                    source=Source.API,
                    uploaded_by=request.user,
                )
            )
        accepted = any(result.status == "accepted" for result in results)
        return Response(
            self.UploadResult(results, many=True).data,
            status=status.HTTP_201_CREATED if accepted else status.HTTP_200_OK,
        )


class ImageDetailApi(APIView):
    @extend_schema(responses=ImageOutput)
    def get(self, request: Request, slug: str, image_id: int) -> Response:
        project, _ = access.project_get(user=request.user, slug=slug, manager=True)
        image = project.images.filter(pk=image_id).select_related("uploaded_by").first()
        if image is None:
            return Response({"detail": "No such image."}, status=status.HTTP_404_NOT_FOUND)
        return Response(ImageOutput(image, context={"slug": slug}).data)


class CaptionListApi(APIView):
    class Input(serializers.Serializer):
        image = serializers.IntegerField()
        text = serializers.CharField(trim_whitespace=False, max_length=10_000)

    @extend_schema(responses=CaptionOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        project, _ = access.project_get(user=request.user, slug=slug, manager=True)
        queryset = Caption.objects.filter(image__project=project).select_related("author")
        if image_id := request.query_params.get("image"):
            if not image_id.isdigit():
                return Response({"image": ["Must be an image id."]}, status=400)
            queryset = queryset.filter(image_id=int(image_id))
        paginator = IdCursorPagination()
        page = paginator.paginate_queryset(queryset, request)
        return paginator.get_paginated_response(CaptionOutput(page, many=True).data)

    @extend_schema(request=Input, responses={201: CaptionOutput})
    def post(self, request: Request, slug: str) -> Response:
        project, _ = access.project_get(user=request.user, slug=slug, manager=True)
        serializer = self.Input(data=request.data)
        serializer.is_valid(raise_exception=True)
        image = project.images.filter(pk=serializer.validated_data["image"]).first()
        if image is None:
            return Response({"image": ["No such image in this project."]}, status=400)
        try:
            caption = caption_create(
                image=image,
                text=serializer.validated_data["text"],
                source=Source.API,
                author=request.user,
            )
        except CaptionError as exc:
            return Response({"text": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(CaptionOutput(caption).data, status=status.HTTP_201_CREATED)


# --- releases (issue 6) ---------------------------------------------------------------------


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
        )


class ReleaseDetailOutput(ReleaseOutput):
    files = serializers.SerializerMethodField()

    class Meta(ReleaseOutput.Meta):
        fields = (*ReleaseOutput.Meta.fields, "files")

    @extend_schema_field(ReleaseFileOutput(many=True))
    def get_files(self, release: Release) -> list[dict]:
        slug = release.project.slug
        return [
            {
                **entry,
                "url": reverse("api-release-file", args=[slug, release.version, entry["path"]]),
            }
            for entry in releases.release_files(release=release)
        ]


class ReleaseListApi(APIView):
    class ReleaseCutInput(serializers.Serializer):
        formats = serializers.ListField(
            child=serializers.ChoiceField(choices=list(FORMATS)), required=False
        )
        copy_images = serializers.BooleanField(default=True)
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
            options = releases.release_options(project=project, **serializer.validated_data)
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        release = releases.release_request(project=project, user=request.user, options=options)
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


class ReleaseFileApi(APIView):
    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        description="One file of a ready release, streamed; only paths its manifest lists.",
    )
    def get(self, request: Request, slug: str, version: int, name: str) -> FileResponse:
        return release_file_response(user=request.user, slug=slug, version=version, name=name)
