"""The annotation queue for programmatic annotators: next, submit, skip, heartbeat."""

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.models import Answer, Lease, LeaseState, TaskKind
from annotate.queue.services import challenges
from annotate.queue.services.judgments import (
    AnsweredDifferently,
    SubmitRefused,
    judgment_submit,
)
from annotate.queue.services.leases import assignment_get, lease_skip, leases_heartbeat
from datasets import access


class OptionOutput(serializers.Serializer):
    number = serializers.IntegerField()
    option_id = serializers.IntegerField()
    text = serializers.CharField()


class LeaseOutput(serializers.Serializer):
    """What an annotator needs to do the task; never the gold answer, nor which challenge
    caption is the known positive."""

    lease_id = serializers.IntegerField(source="pk")
    expires_at = serializers.DateTimeField()
    kind = serializers.CharField(source="task.kind")
    image_id = serializers.IntegerField(source="task.image_id")
    image_url = serializers.SerializerMethodField()
    caption = serializers.SerializerMethodField()
    options = serializers.SerializerMethodField()

    def get_image_url(self, lease: Lease) -> str:
        return reverse(
            "image-file", kwargs={"slug": lease.project.slug, "image_id": lease.task.image_id}
        )

    def get_caption(self, lease: Lease) -> str | None:
        if lease.task.kind != TaskKind.VERIFY:
            return None
        return lease.task.pair.caption.text

    @extend_schema_field(OptionOutput(many=True, allow_null=True))
    def get_options(self, lease: Lease) -> list[dict] | None:
        """A challenge's captions in this lease's order; mark the ones that match."""
        if lease.task.kind != TaskKind.CHALLENGE:
            return None
        shown = challenges.options_shown(
            options=challenges.options_for(task=lease.task), lease_id=lease.pk
        )
        return OptionOutput(shown, many=True).data


class TaskNextApi(APIView):
    project_need = access.WORK

    @extend_schema(
        request=None,
        responses={200: LeaseOutput, 204: None},
        description="Your current task (the same one until you answer or skip it), or 204 when "
        "there is nothing to do.",
    )
    def post(self, request: Request, slug: str) -> Response:
        project, _ = access.api_project(request)
        assignment = assignment_get(project=project, annotator=request.user, lookahead=0)
        if assignment.current is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(LeaseOutput(assignment.current).data)


def _lease_project(view: APIView, request: Request) -> dict:
    """The access check's lookup for a lease: the project of the caller's own lease."""
    leases = Lease.objects.filter(pk=view.kwargs["lease_id"], annotator=request.user)
    return {"pk__in": leases.values("project_id")}


class LeaseSubmitApi(APIView):
    project_need = access.WORK
    access_lookup = _lease_project

    class LeaseSubmitInput(serializers.Serializer):
        answer = serializers.ChoiceField(choices=Answer.choices)
        caption_text = serializers.CharField(required=False, allow_blank=True, default="")
        image_unusable = serializers.BooleanField(required=False, default=False)
        caption_offensive = serializers.BooleanField(required=False, default=False)
        marked = serializers.ListField(
            child=serializers.IntegerField(),
            required=False,
            default=list,
            help_text="For a challenge (answer 'challenge'): the option ids that match.",
        )

    class LeaseSubmitOutput(serializers.Serializer):
        judgment_id = serializers.IntegerField(source="judgment.pk")
        answer = serializers.CharField(source="judgment.answer")
        created = serializers.BooleanField()

    @extend_schema(
        request=LeaseSubmitInput,
        responses={
            201: LeaseSubmitOutput,
            200: LeaseSubmitOutput,
            409: inline_serializer(
                "SubmitRefused",
                {
                    "detail": serializers.CharField(),
                    "problems": serializers.ListField(child=serializers.CharField()),
                    "text": serializers.CharField(),
                    "judgment_id": serializers.IntegerField(required=False),
                    "answer": serializers.CharField(required=False),
                },
            ),
        },
        description="Answer a leased task. Submitting the same answer to the same lease again "
        "returns the first judgment with 200. 409 when the answer cannot be recorded (skipped, "
        "expired and taken by others, or the lease was already answered differently: then "
        "`judgment_id` and `answer` are the recorded ones) or a caption breaks the project's "
        "rules; any text is returned.",
    )
    def post(self, request: Request, lease_id: int) -> Response:
        lease = get_object_or_404(Lease, pk=lease_id, annotator=request.user)
        serializer = self.LeaseSubmitInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            result = judgment_submit(lease=lease, **serializer.validated_data)
        except SubmitRefused as refused:
            body = {"detail": str(refused), "problems": refused.problems, "text": refused.text}
            if isinstance(refused, AnsweredDifferently):
                body.update(judgment_id=refused.first.pk, answer=refused.first.answer)
            return Response(body, status=status.HTTP_409_CONFLICT)
        return Response(
            self.LeaseSubmitOutput(result).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class LeaseSkipApi(APIView):
    project_need = access.WORK
    access_lookup = _lease_project

    @extend_schema(
        request=None,
        responses={204: None, 409: OpenApiResponse(description="The task was already answered")},
        description="Give the task back. 204 (also for a lease skipped or expired before); 409 "
        "when it was already answered: the answer stands and nothing is skipped.",
    )
    def post(self, request: Request, lease_id: int) -> Response:
        lease = get_object_or_404(Lease, pk=lease_id, annotator=request.user)
        if lease_skip(lease=lease) == LeaseState.SUBMITTED:
            return Response(
                {"detail": "This task was already answered; the answer stands, nothing skipped."},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


class HeartbeatApi(APIView):
    project_need = access.WORK

    @extend_schema(
        request=None,
        responses=inline_serializer("Heartbeat", {"renewed": serializers.IntegerField()}),
    )
    def post(self, request: Request, slug: str) -> Response:
        project, _ = access.api_project(request)
        return Response({"renewed": leases_heartbeat(project=project, annotator=request.user)})
