"""REST API for adding and listing images and captions, and for upload and import jobs: one class
per operation, nested serializers."""

from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import access
from datasets.api import query_id
from datasets.ingest import selectors
from datasets.ingest.captions import CaptionError
from datasets.ingest.forms import BUCKET_NAME, NO_CONTROLS, collect_source_problem
from datasets.ingest.services.collection import (
    CollectionRefused,
    bucket_job_create,
    collection_job_create,
    collection_pause,
    collection_progress,
    collection_resume,
    collection_retry_failed,
)
from datasets.ingest.services.jobs import InputRefused, import_job_create, upload_job_create
from datasets.ingest.services.uploads import caption_create
from datasets.ingest.sources import ENCODINGS
from datasets.models import Caption, Image, ImportJob, ImportKind, ImportRow, RowOutcome, Source
from datasets.pagination import IdCursorPagination

NO_FILES = "Send one or more files in the multipart field 'files'."


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


class ImportJobOutput(serializers.ModelSerializer):
    """An upload or import job: its progress, counts per outcome and where its rows are."""

    counts = serializers.SerializerMethodField()
    percent = serializers.IntegerField()
    created_by = serializers.CharField(source="created_by.username", default=None)
    url = serializers.SerializerMethodField()
    rows_url = serializers.SerializerMethodField()
    results_page = serializers.SerializerMethodField()

    class Meta:
        model = ImportJob
        fields = (
            "id",
            "kind",
            "source",
            "status",
            "rows_total",
            "rows_done",
            "percent",
            "counts",
            "images_added",
            "captions_added",
            "notes",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "url",
            "rows_url",
            "results_page",
        )

    @extend_schema_field(
        inline_serializer(
            "ImportCounts",
            {
                name: serializers.IntegerField()
                for name in ("added", "present", "merged", "refused")
            },
        )
    )
    def get_counts(self, job: ImportJob) -> dict:
        return {
            "added": job.added,
            "present": job.present,
            "merged": job.merged,
            "refused": job.refused,
        }

    def _route(self, job: ImportJob) -> dict:
        return {"slug": self.context["slug"], "job_id": job.pk}

    def get_url(self, job: ImportJob) -> str:
        return reverse("api-import", kwargs=self._route(job))

    def get_rows_url(self, job: ImportJob) -> str:
        return reverse("api-import-rows", kwargs=self._route(job))

    def get_results_page(self, job: ImportJob) -> str:
        return reverse("import-job", kwargs=self._route(job))


class ImportRowOutput(serializers.ModelSerializer):
    class Meta:
        model = ImportRow
        fields = ("position", "where", "name", "outcome", "reason", "image", "caption")


class PositionCursorPagination(IdCursorPagination):
    ordering = "position"


def _job_response(job: ImportJob, slug: str, *, created: bool) -> Response:
    data = ImportJobOutput(job, context={"slug": slug}).data
    code = status.HTTP_201_CREATED if not job.is_live else status.HTTP_202_ACCEPTED
    return Response(
        data, status=code if created else status.HTTP_200_OK, headers={"Location": data["url"]}
    )


class ImageListApi(APIView):
    project_need = access.MANAGE
    parser_classes = (MultiPartParser, FormParser)

    @extend_schema(responses=ImageOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        project, _ = access.api_project(request)
        paginator = IdCursorPagination()
        queryset = project.images.select_related("uploaded_by")
        page = paginator.paginate_queryset(queryset, request)
        data = ImageOutput(page, many=True, context={"slug": slug}).data
        return paginator.get_paginated_response(data)

    @extend_schema(
        request=inline_serializer(
            "ImageUpload", {"files": serializers.ListField(child=serializers.FileField())}
        ),
        responses={201: ImportJobOutput, 202: ImportJobOutput},
        description="Upload images or zip archives of images as one import job. A few plain "
        "images are checked at once (201, the job done); anything larger is stored and run by a "
        "worker (202, the job queued: follow `url` for progress and `rows_url` for one outcome "
        "per file or zip member: added, present, merged or refused with its reason).",
    )
    def post(self, request: Request, slug: str) -> Response:
        project, _ = access.api_project(request)
        uploads = request.FILES.getlist("files") or request.FILES.getlist("file")
        if not uploads:
            return Response({"detail": NO_FILES}, status=status.HTTP_400_BAD_REQUEST)
        job = upload_job_create(
            project=project, files=uploads, source=Source.API, created_by=request.user
        )
        return _job_response(job, slug, created=True)


class ImportListApi(APIView):
    project_need = access.MANAGE
    parser_classes = (MultiPartParser, FormParser)

    class ImportInput(serializers.Serializer):
        kind = serializers.ChoiceField(choices=[ImportKind.MANIFEST, ImportKind.COCO])
        manifest = serializers.FileField(required=False)
        images = serializers.ListField(child=serializers.FileField(), required=False)
        encoding = serializers.ChoiceField(choices=list(ENCODINGS), default="auto")

    @extend_schema(responses=ImportJobOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        project, _ = access.api_project(request)
        paginator = IdCursorPagination()
        page = paginator.paginate_queryset(
            project.import_jobs.select_related("created_by"), request
        )
        data = ImportJobOutput(page, many=True, context={"slug": slug}).data
        return paginator.get_paginated_response(data)

    @extend_schema(
        request=ImportInput,
        responses={202: ImportJobOutput},
        description="Import a CSV/JSONL manifest or a COCO captions file with the images it "
        "names (image files, or zips of them, in `images`; `manifest` may be left out when a zip "
        "holds it). `encoding` (default `auto`: byte-order mark, UTF-8, else detected) names the "
        "manifest's text encoding. The files are stored and a worker imports them row by row "
        "(202).",
    )
    def post(self, request: Request, slug: str) -> Response:
        project, _ = access.api_project(request)
        serializer = self.ImportInput(
            data={
                "kind": request.data.get("kind"),
                **({"encoding": request.data["encoding"]} if "encoding" in request.data else {}),
                **({"manifest": request.FILES["manifest"]} if "manifest" in request.FILES else {}),
                "images": request.FILES.getlist("images"),
            }
        )
        serializer.is_valid(raise_exception=True)
        try:
            job = import_job_create(
                project=project,
                kind=serializer.validated_data["kind"],
                manifest=serializer.validated_data.get("manifest"),
                images=serializer.validated_data.get("images", []),
                created_by=request.user,
                encoding=serializer.validated_data["encoding"],
            )
        except InputRefused as exc:
            return Response({"manifest": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        return _job_response(job, slug, created=True)


class ImportDetailApi(APIView):
    project_need = access.MANAGE

    @extend_schema(responses=ImportJobOutput)
    def get(self, request: Request, slug: str, job_id: int) -> Response:
        project, _ = access.api_project(request)
        job = selectors.job_get(project=project, job_id=job_id)
        if job is None:
            return Response({"detail": "No such import."}, status=status.HTTP_404_NOT_FOUND)
        return _job_response(job, slug, created=False)


class ImportRowsApi(APIView):
    project_need = access.MANAGE

    @extend_schema(
        parameters=[
            OpenApiParameter("outcome", str, enum=RowOutcome.values, required=False),
        ],
        responses=ImportRowOutput(many=True),
    )
    def get(self, request: Request, slug: str, job_id: int) -> Response:
        project, _ = access.api_project(request)
        job = selectors.job_get(project=project, job_id=job_id)
        if job is None:
            return Response({"detail": "No such import."}, status=status.HTTP_404_NOT_FOUND)
        rows = ImportRow.objects.filter(job=job)
        outcome = request.query_params.get("outcome")
        if outcome:
            if outcome not in RowOutcome.values:
                return Response(
                    {"outcome": [f"One of {', '.join(RowOutcome.values)}."]}, status=400
                )
            rows = rows.filter(outcome=outcome)
        paginator = PositionCursorPagination()
        page = paginator.paginate_queryset(rows, request)
        return paginator.get_paginated_response(ImportRowOutput(page, many=True).data)


class ImageDetailApi(APIView):
    project_need = access.MANAGE

    @extend_schema(responses=ImageOutput)
    def get(self, request: Request, slug: str, image_id: int) -> Response:
        project, _ = access.api_project(request)
        image = project.images.filter(pk=image_id).select_related("uploaded_by").first()
        if image is None:
            return Response({"detail": "No such image."}, status=status.HTTP_404_NOT_FOUND)
        return Response(ImageOutput(image, context={"slug": slug}).data)


class CaptionListApi(APIView):
    project_need = access.MANAGE

    class CaptionCreateInput(serializers.Serializer):
        image = serializers.IntegerField()
        text = serializers.CharField(trim_whitespace=False, max_length=10_000)

    @extend_schema(responses=CaptionOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        project, _ = access.api_project(request)
        queryset = Caption.objects.filter(image__project=project).select_related("author")
        if (image_id := query_id(request, "image")) is not None:
            queryset = queryset.filter(image_id=image_id)
        paginator = IdCursorPagination()
        page = paginator.paginate_queryset(queryset, request)
        return paginator.get_paginated_response(CaptionOutput(page, many=True).data)

    @extend_schema(request=CaptionCreateInput, responses={201: CaptionOutput})
    def post(self, request: Request, slug: str) -> Response:
        project, _ = access.api_project(request)
        serializer = self.CaptionCreateInput(data=request.data)
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


class CollectionProgressOutput(serializers.Serializer):
    """Where a collection stands: rows by state, rates, failures by reason."""

    total = serializers.IntegerField(allow_null=True)
    fetched = serializers.IntegerField()
    failed = serializers.IntegerField()
    pending = serializers.IntegerField()
    in_flight = serializers.IntegerField()
    waiting_retry = serializers.IntegerField()
    per_minute_recent = serializers.FloatField()
    per_minute_overall = serializers.FloatField()
    held_long = serializers.IntegerField(
        help_text="Rows claimed longer ago than a fetch takes (their worker may have stopped)"
    )
    taken_back_at = serializers.DateTimeField(
        allow_null=True, help_text="When the first of those is taken back by the other workers"
    )
    failures = serializers.SerializerMethodField()

    @extend_schema_field(
        inline_serializer(
            "CollectFailure",
            {
                "code": serializers.CharField(),
                "label": serializers.CharField(),
                "count": serializers.IntegerField(),
            },
            many=True,
        )
    )
    def get_failures(self, progress) -> list[dict]:
        return [
            {"code": code, "label": label, "count": count}
            for code, label, count in progress.failures
        ]


def _collection_response(job: ImportJob, slug: str, *, code: int = 200) -> Response:
    data = ImportJobOutput(job, context={"slug": slug}).data
    data["progress"] = CollectionProgressOutput(collection_progress(job=job)).data
    data["url"] = reverse("api-collection", kwargs={"slug": slug, "job_id": job.pk})
    return Response(data, status=code, headers={"Location": data["url"]})


class CollectionListApi(APIView):
    project_need = access.MANAGE
    parser_classes = (MultiPartParser, FormParser)

    class CollectInput(serializers.Serializer):
        manifest = serializers.FileField(required=False)
        url_column = serializers.CharField(
            max_length=100, required=False, default="url", validators=[NO_CONTROLS]
        )
        caption_column = serializers.CharField(
            max_length=100, required=False, default="caption", validators=[NO_CONTROLS]
        )
        bucket = serializers.CharField(
            max_length=63, required=False, default="", validators=[BUCKET_NAME]
        )
        prefix = serializers.CharField(
            max_length=900,
            required=False,
            default="",
            allow_blank=True,
            validators=[NO_CONTROLS],
        )
        captions_key = serializers.CharField(
            max_length=900, required=False, default="", allow_blank=True, validators=[NO_CONTROLS]
        )

        def validate(self, data):
            if problem := collect_source_problem(data):
                raise serializers.ValidationError(problem)
            return data

    @extend_schema(
        request=CollectInput,
        responses={202: ImportJobOutput},
        description="Collect images from a manifest of URLs (CSV, TSV, JSONL or Parquet in "
        "img2dataset's shapes: `url`, `caption`, other columns kept as provenance), or from every "
        "image under an S3 prefix (`bucket`, `prefix`; captions from sidecar .txt files or from a "
        "manifest in the bucket named by `captions_key`, with `key` and `caption` columns). "
        "Workers fetch each row (never from private addresses) and add it through the normal "
        "checks; every row ends fetched or failed with its reason (`rows_url`; progress at `url`).",
    )
    def post(self, request: Request, slug: str) -> Response:
        project, _ = access.api_project(request)
        serializer = self.CollectInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            if data.get("manifest"):
                job = collection_job_create(
                    project=project,
                    created_by=request.user,
                    manifest=data["manifest"],
                    url_column=data["url_column"],
                    caption_column=data["caption_column"],
                )
            else:
                job = bucket_job_create(
                    project=project,
                    created_by=request.user,
                    bucket=data["bucket"],
                    prefix=data["prefix"],
                    captions_key=data["captions_key"],
                )
        except InputRefused as exc:
            return Response({"manifest": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        return _collection_response(job, slug, code=status.HTTP_202_ACCEPTED)


class CollectionDetailApi(APIView):
    project_need = access.MANAGE

    @extend_schema(responses=ImportJobOutput)
    def get(self, request: Request, slug: str, job_id: int) -> Response:
        project, _ = access.api_project(request)
        job = selectors.job_get(project=project, job_id=job_id)
        if job is None:
            return Response({"detail": "No such import."}, status=status.HTTP_404_NOT_FOUND)
        return _collection_response(job, slug)


class _CollectionActionApi(APIView):
    project_need = access.MANAGE
    service = None

    @extend_schema(request=None, responses={200: ImportJobOutput})
    def post(self, request: Request, slug: str, job_id: int) -> Response:
        project, _ = access.api_project(request)
        job = selectors.job_get(project=project, job_id=job_id)
        if job is None:
            return Response({"detail": "No such import."}, status=status.HTTP_404_NOT_FOUND)
        try:
            type(self).service(job=job)
        except CollectionRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        job.refresh_from_db()
        return _collection_response(job, slug)


class CollectionPauseApi(_CollectionActionApi):
    """Pause a collection: no new rows are claimed; rows in flight still end."""

    service = staticmethod(collection_pause)


class CollectionResumeApi(_CollectionActionApi):
    """Resume a paused collection (or re-queue one whose workers were lost)."""

    service = staticmethod(collection_resume)


class CollectionRetryApi(_CollectionActionApi):
    """Put the failed rows back to pending and run them again."""

    service = staticmethod(collection_retry_failed)
