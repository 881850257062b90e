from rest_framework.pagination import CursorPagination


class IdCursorPagination(CursorPagination):
    """Keyset paging on the primary key: page 10,000 costs what page 1 does."""

    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
