"""Errors raised for bad input: each names the file, the field and the byte offset when known."""

from __future__ import annotations


class InputError(Exception):
    """Bad or hostile input. The message is one line a person can act on."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        field: str | None = None,
        offset: int | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.field = field
        self.offset = offset
        super().__init__(self.describe())

    def describe(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.field:
            where.append(f"field {self.field}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message

    def with_source(self, source: str) -> InputError:
        """The same error, attributed to a file (parsers do not know file names)."""
        return InputError(self.message, source=source, field=self.field, offset=self.offset)
