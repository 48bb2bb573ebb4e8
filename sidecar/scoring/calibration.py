"""A scorer's calibration: a monotone map from its raw score to P(relevant), fitted on judged
pairs by `rerank-sidecar calibrate` (sidecar.evaluation.calibration) and read from the JSON file
that `scorer.calibration` names.

Every scorer's raw score has its own distribution (Lychee: P("yes"); MiniLM: a clipped cosine),
so one rules file's thresholds ("drop below 0.4") mean something else on each. Calibrated, a
score is the probability that a shop's raters call the pair relevant, on every model.

The map is applied after the cache (ScoringService.score): raw scores stay in the cache, so fitting
or changing a calibration invalidates nothing. A calibration belongs to one score identity
(sidecar.scoring.identity); a file fitted for another identity is refused (ConfigError naming
both). The map is strictly increasing, so the model's own order never changes:

- `platt`: P = 1 / (1 + exp(-(a * raw + b))), with a > 0;
- `isotonic`: a piecewise-linear non-decreasing curve through the fitted points; where it is
  flat, the raw score breaks the tie at weight 1e-6, so two products the model told apart are
  never tied by the calibration.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sidecar.errors import ConfigError

FORMAT = "rerank-sidecar-calibration/1"
BUNDLED = "bundled"  # scorer.calibration's default: the shipped calibration of this scorer, if any
BUNDLED_DIR = Path(__file__).parent / "calibrations"  # package data, one file per identity
METHODS = ("isotonic", "platt")
TIE_BREAK = 1e-6  # isotonic: weight of the raw score in the calibrated one (keeps it strict)

Method = Literal["isotonic", "platt"]


@dataclass(frozen=True)
class Calibration:
    method: Method
    score_identity: str  # identity_of(scorer) when it was fitted
    model: str  # the scorer's model_id then, for messages
    params: Mapping[str, Any]  # platt: a, b; isotonic: x, y (the curve's points)
    meta: Mapping[str, Any] = field(default_factory=dict)  # data, quality, created...
    source: str = ""  # the file it was read from
    version: str = ""  # "<method>@<content hash>": what answers name it by

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.method == "platt":
            a, b = float(self.params["a"]), float(self.params["b"])
            if not (math.isfinite(a) and math.isfinite(b)) or a <= 0:
                raise ValueError(f"platt needs a finite a > 0 and a finite b (a={a}, b={b})")
        else:
            xs, ys = list(self.params["x"]), list(self.params["y"])
            if not xs or len(xs) != len(ys):
                raise ValueError("isotonic needs as many y as x values, at least one")
            if any(not math.isfinite(v) for v in (*xs, *ys)):
                raise ValueError("isotonic points must be finite numbers")
            if any(b < a for a, b in itertools.pairwise(xs)):
                raise ValueError("isotonic x values must be sorted")
            if any(b < a for a, b in itertools.pairwise(ys)):
                raise ValueError("isotonic y values must not decrease")
            if not all(0.0 <= y <= 1.0 for y in ys):
                raise ValueError("isotonic y values are probabilities in [0, 1]")

    def __call__(self, raw: float) -> float:
        if self.method == "platt":
            z = float(self.params["a"]) * raw + float(self.params["b"])
            return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
        y = _interpolate(self.params["x"], self.params["y"], raw)
        return (1.0 - TIE_BREAK) * y + TIE_BREAK * min(max(raw, 0.0), 1.0)

    def apply(self, scores: Sequence[float | None]) -> list[float | None]:
        """Calibrated scores; None (not scored) stays None."""
        return [None if s is None else self(s) for s in scores]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "method": self.method,
            "score_identity": self.score_identity,
            "model": self.model,
            "map": dict(self.params),
            **dict(self.meta),
        }


def check_identity(calibration: Calibration, identity: str, model_id: str) -> None:
    """ConfigError unless `calibration` was fitted for this score identity."""
    if calibration.score_identity != identity:
        raise ConfigError(
            f"scorer.calibration {calibration.source or '(given)'} was fitted for score "
            f"identity {calibration.score_identity} (model {calibration.model}), but the "
            f"scorer's score identity is {identity} (model {model_id}); fit one for this "
            "scorer with `rerank-sidecar calibrate`, or leave scorer.calibration unset",
            field="scorer.calibration",
        )


def parse_calibration(data: Any, source: str = "<calibration>", digest: str = "") -> Calibration:
    """A Calibration from its JSON value, or ConfigError naming `source` and what is wrong."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a calibration file holds a JSON object")
    if data.get("format") != FORMAT:
        raise ConfigError(
            f"{source}: not a calibration file (format {data.get('format')!r}, "
            f"expected {FORMAT!r}); make one with `rerank-sidecar calibrate`"
        )
    missing = [k for k in ("method", "score_identity", "model", "map") if k not in data]
    if missing:
        raise ConfigError(f"{source}: missing {', '.join(missing)}")
    core = {"format", "method", "score_identity", "model", "map"}
    try:
        return Calibration(
            method=data["method"],
            score_identity=str(data["score_identity"]),
            model=str(data["model"]),
            params=dict(data["map"]),
            meta={k: v for k, v in data.items() if k not in core},
            source=source,
            version=f"{data['method']}@{digest}" if digest else str(data["method"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ConfigError(f"{source}: invalid calibration map: {detail}") from exc


def load_calibration(path: Path) -> Calibration:
    """The calibration in `path`, or ConfigError (unreadable, not JSON, not a calibration)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read calibration file: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: calibration file is not JSON: {exc}") from exc
    return parse_calibration(data, str(path), hashlib.sha256(raw).hexdigest()[:12])


def bundled_for(identity: str) -> Calibration | None:
    """The calibration shipped with the package for this score identity (today: the default
    MiniLM with its bundled weights, `calibrations/minilm-default.json`), or None."""
    for path in sorted(BUNDLED_DIR.glob("*.json")):
        calibration = load_calibration(path)
        if calibration.score_identity == identity:
            return calibration
    return None


RAW_NOTE = (
    "scores are raw: rules thresholds (drop, bands, model_score conditions) assume probabilities"
)


def calibration_state(
    setting: str | Path | None,
    calibration: Calibration | None,
    identity: str | None,
    model_id: str,
) -> dict[str, Any]:
    """Whether scores are calibrated, and why not (for /readyz and `rules check`). `setting`
    is scorer.calibration; `identity` the scorer's score identity, None while not known yet
    (a model whose identity is final only once loaded)."""
    if calibration is not None:
        data = calibration.meta.get("data", {})
        return {
            "calibrated": True,
            "version": calibration.version,
            "source": BUNDLED if setting == BUNDLED else str(setting),
            "fitted_on": data.get("name") if isinstance(data, dict) else None,
        }
    if setting is None:
        why = "scorer.calibration is null"
    elif setting != BUNDLED:
        why = f"scorer.calibration {setting} is not this scorer's (another score identity)"
    elif identity is None:
        why = "the shipped calibrations are looked up once the model has loaded"
    else:
        why = (
            f"no calibration ships for score identity {identity} (model {model_id}); fit one "
            "with `rerank-sidecar calibrate` and name it in scorer.calibration"
        )
    return {"calibrated": False, "reason": f"{RAW_NOTE} ({why})"}


def _interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """The curve through (xs, ys) at x, flat beyond its ends (numpy.interp, for one value)."""
    if x <= xs[0]:
        return float(ys[0])
    if x >= xs[-1]:
        return float(ys[-1])
    i = bisect_right(xs, x)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return float(y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0))
