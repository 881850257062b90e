"""REST API for adding and listing images and captions: one class per operation, nested serializers."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import access
from datasets.ingest.captions import CaptionError
from datasets.ingest.services.uploads import caption_create, upload_ingest
from datasets.models import Caption, Image, Source
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


class ImageListApi(APIView):
    project_need = access.MANAGE
    parser_classes = (MultiPartParser, FormParser)

    class UploadResult(serializers.Serializer):
        name = serializers.CharField()
        status = serializers.ChoiceField(choices=["accepted", "duplicate", "rejected"])
        reason = serializers.CharField()
        image_id = serializers.IntegerField(allow_null=True)

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
        responses={201: UploadResult(many=True), 200: UploadResult(many=True)},
        description="Upload images (or zip archives of images). Each file is accepted, "
        "recognised as a duplicate, or rejected with its reason; one bad file never fails "
        "the others. 201 when at least one image was added.",
    )
    def post(self, request: Request, slug: str) -> Response:
        project, _ = access.api_project(request)
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
        if image_id := request.query_params.get("image"):
            if not image_id.isdigit():
                return Response({"image": ["Must be an image id."]}, status=400)
            queryset = queryset.filter(image_id=int(image_id))
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
