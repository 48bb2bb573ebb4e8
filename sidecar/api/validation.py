"""pydantic's validation errors as the project reports them: one `{field, reason}` per field,
without pydantic's union member tags. The app's 422 handler and the routes that answer in another
API's shape (api.compat) read request errors through this one function."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sidecar.errors import InvalidRequest

_UNION_TAG = re.compile(r"^(str|int|float|bool|constrained-\w+|list\[.*\]|dict\[.*\]|[A-Z]\w*)$")


def validation_errors(raw: Sequence[Any]) -> list[dict[str, str]]:
    """pydantic errors -> [{field, reason}], one per field, without union member tags."""
    merged: dict[str, list[str]] = {}
    for err in raw:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx", {}).get("error", "")
            merged.setdefault("body", []).append(f"malformed JSON: {ctx}".rstrip(": "))
            continue
        parts = [str(p) for p in err["loc"] if p != "body" and not _UNION_TAG.match(str(p))]
        reason = str(err["msg"]).removeprefix("Value error, ")
        reasons = merged.setdefault(".".join(parts) or "body", [])
        if reason not in reasons:
            reasons.append(reason)
    return [{"field": f, "reason": " or ".join(r)} for f, r in merged.items()]


def invalid_request(raw: Sequence[Any]) -> InvalidRequest:
    """The first field's error as an InvalidRequest (every field's in its `errors` detail)."""
    errors = validation_errors(raw)
    first = errors[0] if errors else {"field": "body", "reason": "invalid request"}
    return InvalidRequest(
        f"{first['field']}: {first['reason']}", field=first["field"], errors=errors
    )
