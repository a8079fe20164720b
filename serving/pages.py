"""Pages the REST port serves beside TF Serving's `/v1/` API (metrics, a console).

The HTTP transport hands every request whose path is not under `/v1/` to the page
handlers it was built with, in order; the first that answers wins, and a path no
handler claims gets 404. Handlers see the path without its query string and
return (status, content type, body), or None when the path is not theirs.
"""
from __future__ import annotations

from typing import Protocol, Sequence


class PageHandler(Protocol):
    def handle(self, method: str, path: str) -> tuple[int, str, bytes] | None:
        """(HTTP status, Content-Type, body) for a path this handler owns, else None."""


def serve_page(handlers: Sequence[PageHandler], method: str, path: str) -> tuple[int, str, bytes] | None:
    """The first handler's answer for `path`, or None when no handler owns it."""
    for handler in handlers:
        answer = handler.handle(method, path)
        if answer is not None:
            return answer
    return None
