"""REST API for API tokens: create one with a username and password, list yours, revoke."""

from django.conf import settings
from django.contrib.auth import authenticate
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import access
from datasets.accounts import selectors, services
from datasets.models import ApiToken

WRONG_CREDENTIALS = "Wrong username or password."
NOT_A_TOKEN_REQUEST = "Send the token to revoke in the Authorization header (Token …)."


class TokenOutput(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uid")

    class Meta:
        model = ApiToken
        fields = ("id", "name", "created", "expiry", "last_used_at")


class TokenApi(APIView):
    """``POST``: a new token for a username and password; ``DELETE``: revoke the token sent."""

    class TokenCreateInput(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False)
        name = serializers.CharField(max_length=services.TOKEN_NAME_MAX, default="API")
        days = serializers.ChoiceField(
            choices=services.TOKEN_LIFETIMES_DAYS,
            required=False,
            help_text="Lifetime in days (default: the server's CONCORD_TOKEN_DAYS).",
        )

    class TokenCreateOutput(TokenOutput):
        token = serializers.CharField(help_text="Shown once: only a digest is stored.")

        class Meta(TokenOutput.Meta):
            fields = (*TokenOutput.Meta.fields, "token")

    def get_permissions(self):
        if self.request.method == "POST":
            return [AllowAny()]
        return super().get_permissions()

    def get_authenticators(self):
        # Creating a token takes a password, not a token or a session.
        if self.request is not None and self.request.method == "POST":
            return []
        return super().get_authenticators()

    def get_throttles(self):
        if self.request.method == "POST":
            return [access.CredentialsThrottle()]
        return super().get_throttles()

    @extend_schema(
        request=TokenCreateInput,
        responses={201: TokenCreateOutput},
        auth=[],
        description="A new named, expiring token; send it as `Authorization: Token …`. "
        "Repeated wrong passwords lock the username out (429) and each address is throttled.",
    )
    def post(self, request: Request) -> Response:
        serializer = self.TokenCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # django-axes reads the attempt off Django's request (and locks the username out).
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None:
            if getattr(request._request, "axes_locked_out", False):
                return Response(
                    {"detail": settings.AXES_COOLOFF_MESSAGE},
                    status=status.HTTP_429_TOO_MANY_REQUESTS,
                )
            return Response(
                {"non_field_errors": [WRONG_CREDENTIALS]}, status=status.HTTP_400_BAD_REQUEST
            )
        token, secret = services.token_create(user=user, name=data["name"], days=data.get("days"))
        token.token = secret
        return Response(self.TokenCreateOutput(token).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None}, description="Revoke the token sent.")
    def delete(self, request: Request) -> Response:
        if not isinstance(request.auth, ApiToken):
            return Response({"detail": NOT_A_TOKEN_REQUEST}, status=status.HTTP_400_BAD_REQUEST)
        services.token_revoke(user=request.user, token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenListApi(APIView):
    @extend_schema(responses=TokenOutput(many=True), description="Your tokens that still work.")
    def get(self, request: Request) -> Response:
        return Response(TokenOutput(selectors.tokens_of(user=request.user), many=True).data)


class TokenDetailApi(APIView):
    # A token belongs to a user, not to a project.
    project_scoped = False

    @extend_schema(request=None, responses={204: None}, description="Revoke one of your tokens.")
    def delete(self, request: Request, token_id) -> Response:
        token = get_object_or_404(selectors.tokens_of(user=request.user), uid=token_id)
        services.token_revoke(user=request.user, token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)
