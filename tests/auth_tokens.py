"""Tokens for tests of authentication: one per scope, with the VIGIL_TOKENS value that holds them."""

from __future__ import annotations

from typing import Final

READ: Final = "read-secret-0123456789abcdef"
CI: Final = "ci-secret-0123456789abcdef"
INGEST: Final = "ingest-secret-0123456789abcdef"
ADMIN: Final = "admin-secret-0123456789abcdef"

# VIGIL_TOKENS for a Vigil that knows all four.
TOKENS_SETTING: Final = f"reader:read:{READ},pipeline:ci:{CI},agent:ingest:{INGEST},root:admin:{ADMIN}"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
