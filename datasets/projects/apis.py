"""REST API for projects and their settings: one class per operation, nested serializers."""

from django.core.exceptions import PermissionDenied
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import access
from datasets.models import Project, Source
from datasets.pagination import IdCursorPagination
from datasets.projects import services
from datasets.projects.services import PROJECT_SETTINGS, RELATED_SETTINGS, settings_problems

TRUSTABLE_SOURCES = [value for value in Source.values if value != Source.ANNOTATOR]


class ProjectOutput(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ("id", "slug", *PROJECT_SETTINGS, "created_at")


class ProjectInput(serializers.ModelSerializer):
    # A list of known sources, not any JSON (the model field is a JSONField).
    trusted_sources = serializers.ListField(
        child=serializers.ChoiceField(choices=TRUSTABLE_SOURCES),
        required=False,
        max_length=len(TRUSTABLE_SOURCES),
    )

    class Meta:
        model = Project
        fields = PROJECT_SETTINGS

    def validate(self, attrs):
        current = self.instance or Project()
        values = {name: attrs.get(name, getattr(current, name)) for name in PROJECT_SETTINGS}
        if problems := settings_problems(values=values):
            raise serializers.ValidationError(_on_sent_fields(problems, sent=attrs))
        return attrs


def _on_sent_fields(problems: dict[str, str], *, sent) -> dict[str, list[str]]:
    """Each problem on its setting, and also on the settings of the request it involves (a
    rule over several settings reports on one of them, maybe not the one that was sent)."""
    errors = {name: [message] for name, message in problems.items()}
    for name, message in problems.items():
        if name not in sent:
            for related in RELATED_SETTINGS.get(name, ()):
                if related in sent:
                    errors.setdefault(related, []).append(message)
    return errors


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
        project = services.project_create(creator=request.user, **serializer.validated_data)
        return Response(ProjectOutput(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    project_need = {"GET": access.READ, "PATCH": access.MANAGE}

    @extend_schema(responses=ProjectOutput)
    def get(self, request: Request, slug: str) -> Response:
        project, _ = access.api_project(request)
        return Response(ProjectOutput(project).data)

    @extend_schema(request=ProjectInput, responses=ProjectOutput)
    def patch(self, request: Request, slug: str) -> Response:
        project, _ = access.api_project(request)
        serializer = ProjectInput(instance=project, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.project_update(project=project, **serializer.validated_data)
        return Response(ProjectOutput(project).data)
