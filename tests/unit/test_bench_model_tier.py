"""The model-tier benchmark's pieces that need no server: vLLM's prefix-cache counters read from
/metrics, the goal, the table; the fault suite's vLLM row (its verdict from records, its skip);
and the GPU script's vLLM path: argument parsing, the model folder it builds, its fast failure
without CUDA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import lychee_gpu, model_tier
from bench.faults import vllm as vllm_fault
from bench.faults.cli import SCENARIOS, parse_only
from bench.faults.common import Options, Suite

METRICS = """\
# HELP vllm:prefix_cache_queries Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="tiny"} 1000.0
vllm:prefix_cache_queries_created{engine="0",model_name="tiny"} 1.7e9
vllm:prefix_cache_hits_total{engine="0",model_name="tiny"} 600.0
vllm:prefix_cache_hits_total{engine="1",model_name="tiny"} 20.0
vllm:external_prefix_cache_hits_total{engine="0",model_name="tiny"} 99.0
"""


def test_prefix_counters_sum_engines_and_skip_created_and_external() -> None:
    counters = model_tier.parse_prefix_counters(METRICS)
    assert counters == {"queries": 1000.0, "hits": 620.0}
    after = {"queries": 3000.0, "hits": 1620.0}
    assert model_tier.prefix_delta(counters, after) == {
        "queries": 2000,
        "hits": 1000,
        "hit_rate": 0.5,
    }
    assert model_tier.prefix_delta(counters, counters)["hit_rate"] is None


def row(tier: str, pairs: float, window: int = 100, clients: int = 8) -> dict[str, Any]:
    return {
        "tier": tier,
        "kind": "text",
        "window": window,
        "clients": clients,
        "pairs_per_s": pairs,
        "p50_ms": 1.0,
        "p95_ms": 2.0,
    }


def test_the_goal_compares_window_100_at_8_clients_only() -> None:
    rows = [row("in process", 500), row("vllm", 400), row("vllm", 9999, window=50)]
    goal = model_tier.goal(rows, {"hits": 3})
    assert goal["vllm_at_least_in_process"] is False
    assert goal["prefix_cache_hits_above_zero"] is True
    rows[1]["pairs_per_s"] = 500
    assert model_tier.goal(rows, {"hits": 0}) == {
        "window100_8clients_pairs_per_s": {"in process": 500.0, "vllm": 500.0},
        "vllm_at_least_in_process": True,
        "prefix_cache_hits_above_zero": False,
    }


def test_the_table_shows_the_hit_rate_for_vllm_rows() -> None:
    rows = [row("in process", 500), {**row("vllm", 600), "prefix_cache": {"hit_rate": 0.538}}]
    lines = model_tier.table(rows).splitlines()
    assert lines[2].endswith("| - |")
    assert lines[3].startswith("| vllm | text | 100 | 8 | 600 ") and lines[3].endswith("| 54% |")


def test_the_cells_are_windows_by_concurrency_then_images() -> None:
    assert model_tier.cells(False) == [
        ("text", 50, 1),
        ("text", 50, 8),
        ("text", 100, 1),
        ("text", 100, 8),
    ]
    assert model_tier.cells(True)[-2:] == [("image+text", 50, 1), ("image+text", 50, 8)]


def test_documents_are_distinct_demo_products_with_their_images() -> None:
    docs = model_tier.documents(100, True)
    assert len(docs) == 100 and len({d["text"] for d in docs}) > 90
    assert all(d["image_url"].startswith("images/p") for d in docs)
    assert "image_url" not in model_tier.documents(50, False)[0]


# ----- the fault suite's vLLM row ---------------------------------------------------------------
def record(t: float, status: str, ms: float = 50.0, **extra: Any) -> dict[str, Any]:
    reason = {"reason": "vllm unreachable"} if status != "ok" else {}
    return {
        "t": t,
        "end": t + ms / 1000,
        "ms": ms,
        "status": 200,
        "timeout_ms": 2000,
        "rerank_status": status,
        **reason,
        **extra,
    }


MARKS = {"normal": 0.0, "slow": 10.0, "after": 20.0, "killed": 30.0, "back": 80.0}


def good_records() -> list[dict[str, Any]]:
    return [
        record(1.0, "ok"),
        record(11.0, "fallback", 2010.0),
        record(21.0, "fallback", 10.0),  # the breaker still open
        record(25.0, "ok"),
        record(31.0, "fallback", 5.0),
        record(70.0, "fallback", 5.0),
        record(81.0, "fallback", 5.0),
        record(85.0, "ok"),
    ]


def test_the_vllm_row_passes_when_every_fault_answer_is_in_time_and_it_recovers() -> None:
    result = vllm_fault.summarize(good_records(), dict(MARKS), {"ready_s": 45.0}, 50.0)
    assert result["passed"] is True
    assert result["recover_after_slow_s"] == pytest.approx(5.0)
    assert result["recover_after_restart_s"] == pytest.approx(5.0)
    assert result["rerank_status_by_phase"]["killed"] == {"fallback": 2}
    (only,) = vllm_fault.rows(result)
    assert only.passed is True and "after vLLM's restart (ready in 45.0 s)" in only.check


def test_the_vllm_row_fails_on_a_late_answer_a_500_or_no_recovery() -> None:
    late = good_records()
    late[1]["ms"] = 2051.0  # 51 ms past timeout_ms: beyond the 50 ms slack
    assert vllm_fault.summarize(late, dict(MARKS), {}, 50.0)["passed"] is False
    broken = good_records()
    broken[4]["status"] = 500
    result = vllm_fault.summarize(broken, dict(MARKS), {}, 50.0)
    assert result["passed"] is False and result["non_2xx"] == {"500": 1}
    never = good_records()[:-1]  # still falling back at the end
    result = vllm_fault.summarize(never, dict(MARKS), {}, 50.0)
    assert result["recover_after_restart_s"] is None and result["passed"] is False
    failed_restart = vllm_fault.summarize(good_records(), dict(MARKS), {"error": "x"}, 50.0)
    assert failed_restart["passed"] is False


def test_the_vllm_scenario_is_skipped_with_the_reason_without_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VLLM_UNAVAILABLE", "download refused")
    monkeypatch.setattr(model_tier, "vllm_unavailable", lambda: "not installed (why)")
    assert vllm_fault.run(Suite(Options())) == {"skipped": "not installed (why)"}
    assert "vllm" in SCENARIOS and parse_only(["vllm"]) == ["vllm"]


# ----- the GPU script's vLLM path --------------------------------------------------------------
def test_the_gpu_script_parses_its_vllm_options() -> None:
    args = lychee_gpu.parser().parse_args(["--vllm", "--model", "/m", "--docs", "50"])
    assert args.vllm and args.model == Path("/m") and args.docs == 50 and args.models is None
    assert not lychee_gpu.parser().parse_args([]).vllm


def test_vllm_without_cuda_stops_at_once_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        lychee_gpu.main(["--vllm"])


def test_the_7b_folder_has_the_published_shapes_and_a_tokenizer_it_points_at(
    tmp_path: Path,
) -> None:
    from transformers import AutoTokenizer

    folder = lychee_gpu.build_model_folder(tmp_path / "lychee-7b", "7b")
    config = json.loads((folder / "config.json").read_text())
    text = config.get("text_config", config)
    assert text["hidden_size"] == 3584 and text["num_hidden_layers"] == 28
    assert text["num_attention_heads"] == 28 and text["num_key_value_heads"] == 4
    assert text["vocab_size"] == 152064 and config["vision_config"]["depth"] == 32
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert not list(folder.glob("*.safetensors"))  # vLLM makes random weights (dummy)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert config["image_token_id"] == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config["vision_start_token_id"] == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert len(tokenizer.encode("yes", add_special_tokens=False)) == 1
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    assert processor["size"]["longest_edge"] == lychee_gpu.VLLM_MAX_PIXELS  # max_pixels
    args = lychee_gpu.vllm_args(folder, "bfloat16")
    assert args[-2:] == ["--load-format", "dummy"] and "--block-size" in args
    assert args[args.index("--dtype") + 1] == "bfloat16"
