"""The API's paging: keyset cursors on an integer column, checked before they reach a query."""

from base64 import b64decode

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination

INVALID_CURSOR = "Invalid cursor."


class IdCursorPagination(CursorPagination):
    """Keyset paging on the primary key: page 10,000 costs what page 1 does.

    A cursor is the client's to send, so a forged or garbled one (not base64, a position that
    is not an integer of the column's range, a NUL byte) is a 400 naming ``cursor`` rather than
    DRF's 404 for some and a database error (500) for the rest.
    """

    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def paginate_queryset(self, queryset, request, view=None):
        self._position_field = queryset.model._meta.get_field(self.ordering.lstrip("-"))
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        encoded = request.query_params.get(self.cursor_query_param)
        try:
            # DRF's decoding skips characters that are not base64, so "!!!" would be page one.
            if encoded is not None:
                b64decode(encoded.encode("ascii"), validate=True)
            cursor = super().decode_cursor(request)
        except (NotFound, ValueError) as exc:
            raise ValidationError({self.cursor_query_param: [INVALID_CURSOR]}) from exc
        position = None if cursor is None else cursor.position
        if position is not None and not _position_valid(position, field=self._position_field):
            raise ValidationError({self.cursor_query_param: [INVALID_CURSOR]})
        return cursor


def _position_valid(text: str, *, field) -> bool:
    """Whether a cursor's position is a value of the ordering column: for an integer column,
    ASCII digits (as the cursors this paginator writes hold; int() takes " 1_0 ", which a
    query would not) within the column's range on this database."""
    internal_type = field.get_internal_type()
    if internal_type not in connection.ops.integer_field_ranges:
        try:
            field.to_python(text)
        except (DjangoValidationError, ValueError, TypeError):
            return False
        return "\x00" not in text
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit()):
        return False
    value = int(text)
    low, high = connection.ops.integer_field_range(internal_type)
    return (low is None or value >= low) and (high is None or value <= high)
