"""Error answers routes declare in the OpenAPI document beside FastAPI's own 422."""

from __future__ import annotations

from typing import Any

__all__ = ["UNREADABLE_BODY", "not_found"]

# FastAPI answers 400 itself when a body cannot be decoded at all (bytes that are not UTF-8);
# JSON that does not parse, or does not fit the model, is a 422.
UNREADABLE_BODY: dict[int | str, dict[str, Any]] = {400: {"description": "the body is not UTF-8 text"}}


def not_found(what: str) -> dict[int | str, dict[str, Any]]:
    return {404: {"description": f"no {what}"}}
