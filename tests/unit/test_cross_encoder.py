"""CrossEncoderScorer on a tiny random BERT cross-encoder (tests/fixtures/tiny_cross_encoder.py),
fp32 on the CPU: scores against a direct transformers forward pass and sentence-transformers'
CrossEncoder, batching, the head's score rule, failed loads, the score identity, and the app
with `scorer.kind: cross-encoder`."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sidecar.app import create_app
from sidecar.cli.judged import with_model
from sidecar.deadline import Deadline
from sidecar.documents import make_document
from sidecar.errors import ConfigError
from sidecar.query import Query
from sidecar.scoring.cross_encoder import CrossEncoderScorer, read_head
from sidecar.wiring import build_scorer
from tests.conftest import make_settings
from tests.fixtures.tiny_cross_encoder import build_tiny_cross_encoder

QUERY = "red running shoes"
TEXTS = [
    ("Red running shoes", ["Lightweight mesh", "Cushioned sole"]),
    ("Tent footprint for TrailPeak 4 person tent", []),
    ("Laptop stand", ["Aluminium", "Adjustable height"]),
    ("Waterproof hiking boots", ["Leather", "Ankle support"] * 30),  # cut at max_length
    ("Packing cubes for carry-on suitcase, 4 sizes", []),
    ("x", []),
]


def documents(texts: list[tuple[str, list[str]]] = TEXTS) -> list[Any]:
    return [make_document(str(i), title, points) for i, (title, points) in enumerate(texts)]


async def loaded(path: Path | str, **options: Any) -> CrossEncoderScorer:
    scorer = CrossEncoderScorer(str(path), **options)
    await scorer.load()
    return scorer


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce") / "ce")


@pytest.fixture(scope="module")
def scorer(tiny_dir: Path) -> CrossEncoderScorer:
    s = CrossEncoderScorer(str(tiny_dir), batch_size=4, max_wait_ms=1)
    asyncio.run(s.load())
    assert s.state.ready, s.state.reason
    return s


def direct_scores(folder: Path, query: str, texts: list[str], *, softmax: bool = False) -> list:
    """What the checkpoint gives through transformers alone: the whole window in one padded
    batch, cut to the model's 128 positions."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    inputs = tokenizer(
        [query] * len(texts),
        texts,
        padding=True,
        truncation=True,
        max_length=128,
        return_tensors="pt",
    )
    with torch.inference_mode():
        logits = model(**inputs).logits
    if softmax:
        return torch.softmax(logits, -1)[:, 1].tolist()
    return torch.sigmoid(logits[:, 0]).tolist()


async def test_scores_equal_a_direct_forward_pass(
    scorer: CrossEncoderScorer, tiny_dir: Path
) -> None:
    docs = documents()
    scores = await scorer.score(
        Query(QUERY), docs, "ignored instruction", deadline=Deadline.after(60)
    )
    expected = direct_scores(tiny_dir, QUERY, [d.text(512) for d in docs])
    assert scores == pytest.approx(expected, abs=1e-6)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert len({round(s, 4) for s in scores}) == len(scores)  # the pairs differ: order is tested


async def test_scores_equal_sentence_transformers_cross_encoder(
    scorer: CrossEncoderScorer, tiny_dir: Path
) -> None:
    from sentence_transformers import CrossEncoder

    docs = documents()
    reference = CrossEncoder(str(tiny_dir), device="cpu").predict(
        [(QUERY, d.text(512)) for d in docs], show_progress_bar=False
    )
    scores = await scorer.score(Query(QUERY), docs, "", deadline=Deadline.after(60))
    assert scores == pytest.approx([float(s) for s in reference], abs=1e-6)


async def test_batched_unbatched_and_one_at_a_time_agree(
    scorer: CrossEncoderScorer, tiny_dir: Path
) -> None:
    docs = documents()
    batched = await scorer.score(Query(QUERY), docs, "", deadline=Deadline.after(60))
    single = [
        (await scorer.score(Query(QUERY), [d], "", deadline=Deadline.after(60)))[0] for d in docs
    ]
    plain = await loaded(tiny_dir, micro_batching=False, batch_size=4)
    try:
        assert plain.batcher is None
        unbatched = await plain.score(Query(QUERY), docs, "", deadline=Deadline.after(60))
    finally:
        await plain.close()
    assert batched == pytest.approx(single, abs=1e-6)
    assert batched == pytest.approx(unbatched, abs=1e-6)


async def test_a_window_larger_than_the_batch_comes_back_whole_and_in_order(
    scorer: CrossEncoderScorer,
) -> None:
    # 23 documents of many lengths: the batcher sorts them by length into batches of 4
    texts = [(f"product {i} " + "mesh sole " * (i * 7 % 11), ["tent"] * (i % 3)) for i in range(23)]
    docs = documents(texts)
    assert scorer.batcher is not None
    before = scorer.batcher.stats.batches
    window = await scorer.score(Query("tent"), docs, "", deadline=Deadline.after(60))
    assert scorer.batcher.stats.batches - before >= 6  # ceil(23 / 4)
    alone = [
        (await scorer.score(Query("tent"), [d], "", deadline=Deadline.after(60)))[0] for d in docs
    ]
    assert len(window) == len(docs)
    assert window == pytest.approx(alone, abs=1e-6)


async def test_concurrent_requests_share_batches(scorer: CrossEncoderScorer) -> None:
    assert scorer.batcher is not None
    docs = documents()[:2]
    scorer.batcher.max_wait_s = 1.0  # both requests' tokenizing lands inside one wait
    try:
        before = scorer.batcher.stats.batches
        together = await asyncio.gather(
            scorer.score(Query("tent"), docs, "", deadline=Deadline.after(60)),
            scorer.score(Query("boots"), docs, "", deadline=Deadline.after(60)),
        )
        assert scorer.batcher.stats.batches - before == 1  # four pairs, two requests, one pass
    finally:
        scorer.batcher.max_wait_s = 0.001
    assert together[0] == pytest.approx(
        await scorer.score(Query("tent"), docs, "", deadline=Deadline.after(60)), abs=1e-6
    )
    assert together[0] != pytest.approx(together[1], abs=1e-6)


async def test_max_length_cuts_the_pair(scorer: CrossEncoderScorer, tiny_dir: Path) -> None:
    docs = documents()
    short = await loaded(tiny_dir, max_length=16, micro_batching=False)
    try:
        pairs = short.tokenize(QUERY, [d.text(512) for d in docs])
        assert max(p.tokens for p in pairs) == 16
        cut = await short.score(Query(QUERY), docs, "", deadline=Deadline.after(60))
    finally:
        await short.close()
    full = await scorer.score(Query(QUERY), docs, "", deadline=Deadline.after(60))
    assert cut[-1] == pytest.approx(full[-1], abs=1e-6)  # "x" fits either way
    assert cut[3] != pytest.approx(full[3], abs=1e-4)  # the long one reads less
    assert short.score_identity != scorer.score_identity


def test_ready_state_and_declared_languages(scorer: CrossEncoderScorer, tiny_dir: Path) -> None:
    assert scorer.reads_images is False
    assert scorer.languages == ("en",)
    assert scorer.model_id == f"cross-encoder@{tiny_dir.name}"
    assert scorer.state.device == "cpu"
    detail = scorer.state.detail
    assert detail is not None
    assert detail["dtype"] == "float32" and detail["labels"] == 1
    assert detail["score"] == "sigmoid(logits[0])"
    assert detail["max_length"] == 128  # the checkpoint's limit, under the 512 asked for
    multilingual = CrossEncoderScorer(str(tiny_dir), languages=["*"])
    assert multilingual.languages == ("*",)


async def test_a_two_label_head_scores_softmax_of_the_second_class(tmp_path: Path) -> None:
    folder = build_tiny_cross_encoder(tmp_path / "two", labels=2)
    two = await loaded(folder)
    try:
        assert two.state.ready, two.state.reason
        docs = documents()
        scores = await two.score(Query(QUERY), docs, "", deadline=Deadline.after(60))
    finally:
        await two.close()
    expected = direct_scores(folder, QUERY, [d.text(512) for d in docs], softmax=True)
    assert scores == pytest.approx(expected, abs=1e-6)
    assert two.state.detail is not None and two.state.detail["score"] == "softmax(logits)[1]"


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def test_the_head_follows_the_activation_the_checkpoint_names(tmp_path: Path) -> None:
    write_json(tmp_path / "config.json", {})
    assert read_head(tmp_path, 1).rule == "sigmoid(logits[0])"
    assert read_head(tmp_path, 2).rule == "softmax(logits)[1]"
    # sentence-transformers before 4 wrote it into config.json
    sigmoid = "torch.nn.modules.activation.Sigmoid"
    write_json(tmp_path / "config.json", {"sbert_ce_default_activation_function": sigmoid})
    assert read_head(tmp_path, 2).rule == "sigmoid(logits[1])"
    assert read_head(tmp_path, 2).named == sigmoid
    # 4 under config.json's sentence_transformers; raw logits are still read into [0, 1]
    identity = "torch.nn.modules.linear.Identity"
    write_json(tmp_path / "config.json", {"sentence_transformers": {"activation_fn": identity}})
    assert read_head(tmp_path, 1).rule == "sigmoid(logits[0])"
    # in a folder sentence-transformers saved (modules.json), its own config file wins
    softmax = "torch.nn.modules.activation.Softmax"
    write_json(tmp_path / "config_sentence_transformers.json", {"activation_fn": softmax})
    assert read_head(tmp_path, 2).named == identity  # not without modules.json
    write_json(tmp_path / "modules.json", [{"idx": 0, "name": "0", "path": "", "type": "T"}])
    assert read_head(tmp_path, 2).named == softmax
    assert read_head(tmp_path, 2).rule == "softmax(logits)[1]"
    with pytest.raises(ValueError, match="single logit"):
        read_head(tmp_path, 1)
    for refused in ("torch.nn.modules.activation.Tanh", "mypackage.Activation"):
        write_json(tmp_path / "config_sentence_transformers.json", {"activation_fn": refused})
        with pytest.raises(ValueError, match=re.escape(refused)):
            read_head(tmp_path, 1)
    with pytest.raises(ValueError, match="3 labels"):
        read_head(tmp_path / "elsewhere", 3)


@pytest.mark.parametrize("layout", ["config.json", "saved by sentence-transformers"])
async def test_a_named_sigmoid_on_a_two_label_head_is_the_second_logit(
    tmp_path: Path, layout: str
) -> None:
    import torch
    from sentence_transformers import CrossEncoder

    sigmoid = "torch.nn.modules.activation.Sigmoid"
    if layout == "config.json":
        folder = build_tiny_cross_encoder(tmp_path / "two", labels=2, activation=sigmoid)
    else:  # modules.json and config_sentence_transformers.json, as CrossEncoder.save writes
        plain = build_tiny_cross_encoder(tmp_path / "plain", labels=2)
        folder = tmp_path / "saved"
        CrossEncoder(str(plain), device="cpu", activation_fn=torch.nn.Sigmoid()).save(str(folder))
        assert (folder / "modules.json").is_file()
    two = await loaded(folder, micro_batching=False)
    try:
        assert two.state.ready, two.state.reason
        scores = await two.score(Query(QUERY), documents(), "", deadline=Deadline.after(60))
    finally:
        await two.close()
    pairs = [(QUERY, d.text(512)) for d in documents()]
    reference = CrossEncoder(str(folder), device="cpu").predict(pairs, show_progress_bar=False)
    assert scores == pytest.approx([float(row[1]) for row in reference], abs=1e-6)
    assert two.head is not None and two.head.rule == "sigmoid(logits[1])"


async def test_a_missing_folder_is_a_failed_state_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    broken = await loaded(missing)
    assert broken.state.status == "failed"
    assert str(missing) in broken.state.reason and "scorer.model_path" in broken.state.reason
    with pytest.raises(RuntimeError, match="not loaded"):
        await broken.score(Query(QUERY), documents(), "", deadline=Deadline.after(60))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("architectures", "not a sequence-classification checkpoint"),
        ("modules", "chains sentence-transformers modules"),
        ("activation", "torch.nn.modules.activation.Tanh"),
    ],
)
async def test_what_it_cannot_run_is_a_failed_state(
    tiny_dir: Path, tmp_path: Path, change: str, reason: str
) -> None:
    folder = Path(shutil.copytree(tiny_dir, tmp_path / "ce"))
    if change == "architectures":  # an encoder without its head: the head would be random
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        write_json(folder / "config.json", {**config, "architectures": ["BertModel"]})
    elif change == "modules":
        write_json(
            folder / "modules.json",
            [
                {"idx": 0, "name": "0", "path": "", "type": "x.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "x.Pooling"},
            ],
        )
    else:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        tanh = {"activation_fn": "torch.nn.modules.activation.Tanh"}
        write_json(folder / "config.json", {**config, "sentence_transformers": tanh})
    broken = await loaded(folder)
    assert broken.state.status == "failed"
    assert reason in broken.state.reason


async def test_the_score_identity_follows_the_weights_content(
    tiny_dir: Path, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(tiny_dir, tmp_path / "same-name"))
    first = await loaded(folder)
    before = first.score_identity
    await first.close()
    assert before == (await loaded(tiny_dir)).score_identity  # same files, another folder
    # new weights under the same file name (another seed: same size, other bytes)
    other = build_tiny_cross_encoder(tmp_path / "other", seed=1)
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")
    again = await loaded(folder)
    assert again.score_identity != before
    await again.close()
    assert CrossEncoderScorer(str(folder), max_doc_chars=256).score_identity != (
        CrossEncoderScorer(str(folder)).score_identity
    )


def test_wiring_needs_a_folder_and_passes_the_settings(tiny_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"scorer\.model_path is required"):
        build_scorer(make_settings(scorer={"kind": "cross-encoder"}))
    built = build_scorer(
        make_settings(
            scorer={
                "kind": "cross-encoder",
                "model_path": str(tiny_dir),
                "max_length": 64,
                "batch_size": 8,
                "micro_batching": False,
                "languages": ["*"],
            }
        )
    )
    assert isinstance(built, CrossEncoderScorer)
    assert (built.max_length, built.batch_size, built.batcher) == (64, 8, None)
    assert built.languages == ("*",)
    chosen = with_model(make_settings(), f"cross-encoder:{tiny_dir}").scorer
    assert (chosen.kind, chosen.model_path) == ("cross-encoder", str(tiny_dir))


@pytest.fixture(scope="module")
def client(tiny_dir: Path) -> Iterator[TestClient]:
    settings = make_settings(scorer={"kind": "cross-encoder", "model_path": str(tiny_dir)})
    with TestClient(create_app(settings, wait_for_model=True)) as test_client:
        yield test_client


def test_the_app_is_ready_with_the_cross_encoder(client: TestClient, tiny_dir: Path) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.text
    model = answer.json()["model"]
    assert model["model"] == f"cross-encoder@{tiny_dir.name}"
    assert model["reads_images"] is False and model["languages"] == ["en"]


def test_api_rerank_reranks_with_the_cross_encoder(client: TestClient, tiny_dir: Path) -> None:
    texts = [title for title, _ in TEXTS[:5]]
    answer = client.post("/api/rerank", json={"query": QUERY, "documents": texts})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == f"cross-encoder@{tiny_dir.name}" and body["rerank_status"] == "ok"
    expected = direct_scores(tiny_dir, QUERY, texts)
    order = sorted(range(len(texts)), key=lambda i: -expected[i])
    assert [r["index"] for r in body["results"]] == order
    got = {r["index"]: r["score"] for r in body["results"]}
    assert [got[i] for i in range(len(texts))] == pytest.approx(expected, abs=1e-6)
    again = client.post("/api/rerank", json={"query": QUERY, "documents": texts}).json()
    assert again["cache"]["hits"] == len(texts)


def test_a_missing_folder_shows_in_readyz_and_refuses_rerank(tmp_path: Path) -> None:
    missing = tmp_path / "no-model"
    settings = make_settings(scorer={"kind": "cross-encoder", "model_path": str(missing)})
    with TestClient(create_app(settings, wait_for_model=True)) as test_client:
        answer = test_client.get("/readyz")
        assert answer.status_code == 503
        model = answer.json()["model"]
        assert model["status"] == "failed" and str(missing) in model["reason"]
        assert (
            test_client.post("/api/rerank", json={"query": "q", "documents": ["d"]}).status_code
            == 503
        )
