"""Paginated lists: the query parameters every list takes and the shape of the page it answers."""

from typing import Any

from rest_framework import serializers

from zeckta.db import Page

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100  # a larger pageSize is served as this many items (the answer's pageSize says so)


class PageQuerySerializer(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, default=1)
    pageSize = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE)

    def validate(self, attrs: dict) -> dict:
        # A misspelt parameter (`page_size`) silently ignored would hide a client bug.
        problems = {name: ["Unknown query parameter."] for name in set(self.initial_data) - set(self.fields)}
        # A query string turns `?page=` into "", which DRF would quietly read as "not given".
        problems.update(
            {name: ["A valid integer is required."] for name in self.fields if self.initial_data.get(name) == ""}
        )
        if problems:
            raise serializers.ValidationError(problems)
        return attrs


class PageOutputSerializer(serializers.Serializer):
    """A page: each list's subclass declares `items`, a many=True serializer of its rows."""

    page = serializers.IntegerField()
    pageSize = serializers.IntegerField()
    total = serializers.IntegerField()
    totalPages = serializers.IntegerField()


def page_data(
    serializer_class: type[PageOutputSerializer], result: Page, *, page: int, page_size: int
) -> dict[str, Any]:
    return serializer_class(
        {
            "items": result.items,
            "page": page,
            "pageSize": page_size,
            "total": result.total,
            "totalPages": -(-result.total // page_size),  # ceiling division
        }
    ).data
