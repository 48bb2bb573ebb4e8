"""The sidecar's error tree and the one table from error to HTTP status.

    SidecarError
    ├── InvalidRequest        422  a request field is wrong (names the field and the reason)
    │   └── BadQuery          400  the engine rejected the first-stage query (engine's reason)
    ├── NotFound              404  unknown index or route target
    ├── Unauthorized          401  admin route without the right bearer token
    ├── Forbidden             403  an index outside engine.allowed_indices, a script not allowed
    ├── EngineUnavailable     503  the search engine cannot be reached
    ├── EngineTimeout         504  the search engine did not answer within the deadline
    ├── ScoringFailed         503  the scorer failed where no fallback exists (/api/rerank)
    ├── ModelNotReady         503  the model is still loading or could not load
    ├── Overloaded            429  the scoring queue is full
    └── ConfigError           --   configuration or rules that do not validate (start-up, reload)

Routes raise these; a single exception handler turns them into JSON with `error`, `message` and,
where known, `field`. Anything else is a bug and is logged with its chain, never echoed to a caller.
"""

from __future__ import annotations

from typing import Any


class SidecarError(Exception):
    """Base of every error the sidecar raises on purpose."""

    code = "sidecar_error"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.details)
        return body


class InvalidRequest(SidecarError):
    """A request field is missing, of the wrong type or out of range."""

    code = "invalid_request"


class BadQuery(InvalidRequest):
    """The engine refused the first-stage query (for example a field type mismatch)."""

    code = "bad_query"


class NotFound(SidecarError):
    """The index (or other named thing) does not exist."""

    code = "not_found"


class Unauthorized(SidecarError):
    """An admin route was called without a valid bearer token."""

    code = "unauthorized"


class Forbidden(SidecarError):
    """The request names an index or a feature (scripts) this sidecar is not allowed to use."""

    code = "forbidden"


class EngineUnavailable(SidecarError):
    """The search engine refused the connection or answered with a server error."""

    code = "engine_unavailable"


class EngineTimeout(SidecarError):
    """The search engine did not answer within the request's deadline."""

    code = "engine_timeout"


class ScoringFailed(SidecarError):
    """The scorer raised and the route has no engine order to fall back on."""

    code = "scoring_failed"


class ModelNotReady(SidecarError):
    """The model is loading, or failed to load (the reason says which)."""

    code = "model_not_ready"


class Overloaded(SidecarError):
    """The scoring queue is full; the caller should retry later."""

    code = "overloaded"


class RequestTimeout(SidecarError):
    """The client did not send its whole request body in time (limits.body_read_timeout_s)."""

    code = "request_timeout"


class ConfigError(SidecarError):
    """Configuration or a rules file does not validate."""

    code = "config_error"


# The body of every 500: a bug, logged with its chain and the request id, never echoed.
INTERNAL_ERROR: dict[str, str] = {"error": "internal", "message": "internal error; see the logs"}

# The one table from error to HTTP status. Order matters: subclasses before their parents.
STATUS: tuple[tuple[type[SidecarError], int], ...] = (
    (BadQuery, 400),
    (InvalidRequest, 422),
    (NotFound, 404),
    (Unauthorized, 401),
    (Forbidden, 403),
    (EngineUnavailable, 503),
    (EngineTimeout, 504),
    (ScoringFailed, 503),
    (ModelNotReady, 503),
    (Overloaded, 429),
    (RequestTimeout, 408),
    (ConfigError, 500),
)


def status_for(error: SidecarError) -> int:
    for kind, status in STATUS:
        if isinstance(error, kind):
            return status
    return 500
