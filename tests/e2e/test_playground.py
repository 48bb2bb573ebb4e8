"""The playground in a real headless Chromium against real sidecars (see conftest.py)."""

from __future__ import annotations

import base64
import csv
import io
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar.config import ECOMMERCE_INSTRUCTION
from sidecar.demo import IMAGES_DIR, load_queries
from tests.e2e.conftest import FAILED_REASON, LiveSidecar

pytestmark = pytest.mark.e2e

SCORE = re.compile(r"^\d\.\d{3}$")


def band_for(score: float) -> str:
    return "strong" if score >= 0.75 else "medium" if score >= 0.55 else "weak"


def relevant_ids(query: str) -> set[str]:
    family = next(q for q in load_queries() if q["query"] == query)
    return set(family["relevant_ids"])


def test_single_analysis_scores_and_highlights_fragments(
    sidecar: LiveSidecar, open_page: Any, artifacts: Path
) -> None:
    page = open_page(sidecar.url)
    page.fill("#single-query", "yoga mat")
    page.fill(
        "#single-points", "Alignment lines\nNon-slip texture on both sides\nShips in a recycled box"
    )
    page.fill("#single-title", "Aquafort Non-Slip Yoga Mat, 6mm Extra Thick")
    page.press("#single-title", "Enter")  # Enter submits

    page.wait_for_selector("#single-result:not([hidden])")
    score_text = page.inner_text("#single-score")
    assert SCORE.match(score_text), score_text
    assert page.inner_text("#single-band") == band_for(float(score_text))
    # The query's own words drive the score: "Yoga" is the strongest positive fragment.
    first = page.locator("#single-fragments tbody tr").first.locator("td")
    assert first.nth(0).inner_text() == "Yoga"
    assert first.nth(2).inner_text().startswith("+")
    yoga = page.locator("#single-title-words .frag", has_text="Yoga")
    assert "up" in (yoga.get_attribute("class") or "")
    assert float(yoga.get_attribute("data-delta") or "0") > 0.1
    # Every selling point and every title word got a delta.
    assert page.locator("#single-fragments tbody tr").count() == 3 + 7
    assert page.locator("#single-points-out li[data-delta]").count() == 3
    page.screenshot(path=str(artifacts / "single.png"), full_page=True)


def test_batch_rerank_sorts_lines_and_copies_csv(
    sidecar: LiveSidecar, open_page: Any, artifacts: Path
) -> None:
    page = open_page(sidecar.url)
    page.click("#tab-batch")
    page.fill("#batch-query", "yoga mat")
    lines = [
        "Merino wool hiking socks, cushioned",
        "15 bar espresso machine with milk frother",
        '{"text": "Non-slip yoga mat, 6mm, with carry strap", "image_url": "images/p00274.png"}',
        "Stainless steel water bottle, 1 litre",
    ]
    page.fill("#batch-docs", "\n".join(lines))
    page.press("#batch-docs", "Control+Enter")

    page.wait_for_selector("#batch-result:not([hidden])")
    rows = page.locator("#batch-table tbody tr")
    assert rows.count() == 4
    top = rows.first.locator("td")
    assert "Non-slip yoga mat" in top.nth(4).inner_text()
    assert top.nth(3).inner_text() == "▲2 from #3"
    scores = [float(rows.nth(i).locator("td").nth(1).inner_text()) for i in range(4)]
    assert scores == sorted(scores, reverse=True)
    assert all(SCORE.match(f"{s:.3f}") for s in scores)
    page.screenshot(path=str(artifacts / "batch.png"), full_page=True)

    page.click("#batch-copy")
    page.wait_for_selector("#batch-copied:has-text('Copied 4 rows')")
    copied = page.evaluate("navigator.clipboard.readText()")
    table = list(csv.reader(io.StringIO(copied)))
    assert table[0] == ["rank", "score", "band", "moved_from", "product"]
    assert table[1][0] == "1" and table[1][3] == "3"
    assert table[1][4].startswith("Non-slip yoga mat")


def test_batch_rejects_bad_json_line_before_calling(sidecar: LiveSidecar, open_page: Any) -> None:
    page = open_page(sidecar.url)
    page.click("#tab-batch")
    page.fill("#batch-query", "yoga mat")
    page.fill("#batch-docs", 'yoga mat\n{"txt": "oops"}')
    page.click("#batch-form button[type=submit]")
    error = page.wait_for_selector("#batch-error:not([hidden])")
    assert 'line 2: a JSON line needs "text"' in error.inner_text()


def test_search_preview_shows_engine_and_reranked_order(
    sidecar: LiveSidecar, open_page: Any, artifacts: Path
) -> None:
    query = "waterproof bluetooth speaker"
    relevant = relevant_ids(query)
    page = open_page(sidecar.url)
    page.click("#tab-search")
    page.fill("#search-window", "20")
    page.fill("#search-query", query)
    page.press("#search-query", "Enter")

    page.wait_for_selector("#search-result:not([hidden])")
    reranked = page.locator("#search-reranked > li")
    engine = page.locator("#search-engine > li")
    assert reranked.count() == engine.count() > 3
    reranked_ids = [reranked.nth(i).get_attribute("data-id") for i in range(3)]
    engine_ids = [engine.nth(i).get_attribute("data-id") for i in range(3)]
    assert set(reranked_ids) <= relevant  # the model lifts the speakers themselves
    assert reranked_ids != engine_ids
    # The engine column is in engine rank order; the reranked column says where each hit came from.
    ranks = [int(engine.nth(i).locator(".rank").inner_text().lstrip("#")) for i in range(5)]
    assert ranks == sorted(ranks) and ranks[0] == 1
    assert re.match(r"^▲\d+ from #\d+$", reranked.first.locator(".moved").inner_text())
    summary = page.inner_text("#search-summary")
    assert "window 20" in summary and "dropped by rules" in summary
    # Product images are served by the sidecar at /ui/images/ and load.
    image = reranked.first.locator("img")
    assert image.get_attribute("src", timeout=1000).startswith("images/")
    page.wait_for_function("() => document.querySelector('#search-reranked img').naturalWidth > 0")
    assert SCORE.match(reranked.first.locator(".score").inner_text())
    page.screenshot(path=str(artifacts / "search.png"), full_page=False)


def test_a_chinese_query_finds_chinese_products_and_says_the_model_cannot_read_it(
    sidecar: LiveSidecar, open_page: Any
) -> None:
    """The first stage finds the Chinese demo products; the CPU default reads English only, so
    the preview shows the engine's order and says why, and the status line says what it reads."""
    page = open_page(sidecar.url)
    page.wait_for_selector("#status:has-text('(en)')")
    page.click("#tab-search")
    page.fill("#search-query", "防水登山靴")
    page.press("#search-query", "Enter")
    page.wait_for_selector("#search-result:not([hidden])")
    engine = page.locator("#search-engine > li")
    assert engine.count() > 3
    assert "登山靴" in engine.first.inner_text()
    summary = page.inner_text("#search-summary")
    assert "fallback" in summary and "does not read Han script" in summary


def test_unknown_rules_variant_is_shown_as_a_422(sidecar: LiveSidecar, open_page: Any) -> None:
    page = open_page(sidecar.url)
    page.click("#tab-search")
    page.fill("#search-rules", "summer-sale")
    page.fill("#search-query", "yoga mat")
    page.press("#search-query", "Enter")
    error = page.wait_for_selector("#search-error:not([hidden])")
    text = error.inner_text()
    assert "422" in text and "summer-sale" in text and "field: rules" in text


def test_uploaded_image_reaches_the_scorer(
    image_sidecar: LiveSidecar, open_page: Any, artifacts: Path
) -> None:
    image = IMAGES_DIR / "p00274.png"
    scorer = image_sidecar.scorer
    page = open_page(image_sidecar.url)
    page.click("#advanced summary")
    page.click("#instruction-ecommerce")
    page.fill("#single-query", "yoga mat")
    page.set_input_files("#single-query-file", str(image))
    page.wait_for_selector("#single-query-preview:not([hidden])")
    page.fill("#single-title", "Non-Slip Yoga Mat")
    product_image = IMAGES_DIR / "p00001.png"
    page.set_input_files("#single-image-file", str(product_image))
    page.wait_for_selector("#single-image-preview:not([hidden])")
    scorer.received.clear()
    page.press("#single-title", "Enter")

    page.wait_for_selector("#single-result:not([hidden])")
    assert len(scorer.received) == 1  # the whole leave-one-out batch in one scorer call
    got = scorer.received[0]
    assert got.query_image == image.read_bytes()
    assert got.instruction == ECOMMERCE_INSTRUCTION
    # the product's upload travels as a data: URL on every leave-one-out variant
    prefix = "data:image/png;base64,"
    assert len(got.document_images) == 1 + 3  # whole product + one per title word
    assert all(url and url.startswith(prefix) for url in got.document_images)
    assert (
        base64.b64decode(str(got.document_images[0])[len(prefix) :]) == product_image.read_bytes()
    )
    assert SCORE.match(page.inner_text("#single-score"))

    # Search preview: the uploaded query image reaches the scorer too.
    page.click("#tab-search")
    page.fill("#search-window", "5")
    page.fill("#search-query", "yoga mat")
    page.set_input_files("#search-query-file", str(image))
    scorer.received.clear()
    page.press("#search-query", "Enter")
    page.wait_for_selector("#search-result:not([hidden])")
    assert [r.query_image for r in scorer.received] == [image.read_bytes()]


def test_uploaded_image_changes_the_lychee_score(
    lychee_sidecar: LiveSidecar, open_page: Any
) -> None:
    """With the real image-reading scorer (tiny random Qwen2.5-VL): the uploaded query image
    reaches the model, which scores differently with it, and an image-only query is accepted."""
    page = open_page(lychee_sidecar.url)
    page.wait_for_selector("#status:has-text('lychee-rerank-mm')")
    page.fill("#single-query", "yoga mat")
    page.fill("#single-title", "Non-Slip Yoga Mat")
    page.fill("#single-points", "Cork")

    def analyze() -> str:
        page.evaluate("document.querySelector('#single-score').textContent = ''")
        page.press("#single-title", "Enter")
        page.wait_for_selector("#single-result:not([hidden])")
        page.wait_for_function("() => document.querySelector('#single-score').textContent")
        return str(page.inner_text("#single-score"))

    text_only = analyze()
    page.set_input_files("#single-query-file", str(IMAGES_DIR / "p00274.png"))
    page.wait_for_selector("#single-query-preview:not([hidden])")
    with_image = analyze()
    page.fill("#single-query", "")
    image_only = analyze()
    assert SCORE.match(text_only) and SCORE.match(with_image) and SCORE.match(image_only)
    assert with_image != text_only
    assert page.locator("#single-error").is_hidden()

    # A product image by URL (a catalog path) is read; one that cannot be loaded is flagged and
    # the product is scored on its text.
    page.fill("#single-image-url", "images/p00274.png")
    with_product_image = analyze()
    assert page.locator("#single-flags").is_hidden()
    assert with_product_image != image_only
    page.fill("#single-image-url", "images/p99999.png")
    analyze()
    assert "Scored on text only: image_failed" in page.inner_text("#single-flags")


def test_image_only_query_on_a_text_scorer_shows_the_422(
    sidecar: LiveSidecar, open_page: Any
) -> None:
    page = open_page(sidecar.url)
    page.set_input_files(
        "#single-query-file",
        files=[
            {
                "name": "q.png",
                "mimeType": "image/png",
                "buffer": (IMAGES_DIR / "p00001.png").read_bytes(),
            }
        ],
    )
    page.fill("#single-title", "Packing cubes")
    page.click("#single-form button[type=submit]")
    error = page.wait_for_selector("#single-error:not([hidden])")
    text = error.inner_text()
    assert "422" in text and "reads text only" in text and "query.text" in text


def test_slow_request_shows_spinner_and_cancels(image_sidecar: LiveSidecar, open_page: Any) -> None:
    scorer = image_sidecar.scorer
    page = open_page(image_sidecar.url)
    page.click("#tab-batch")
    page.fill("#batch-query", "slow yoga mat")
    page.fill("#batch-docs", "cork yoga block\nyoga strap")
    scorer.delay_s = 1.5
    try:
        page.press("#batch-docs", "Control+Enter")
        page.wait_for_selector("#batch-busy:not([hidden]) .spinner")
        page.click("#batch-busy .cancel")
        error = page.wait_for_selector("#batch-error:not([hidden])")
        assert error.inner_text() == "Cancelled."
        assert page.locator("#batch-busy").is_hidden()
        assert page.locator("#batch-result").is_hidden()
    finally:
        scorer.delay_s = 0.0


def test_model_loading_shows_progress(
    loading_sidecar: LiveSidecar, open_page: Any, artifacts: Path
) -> None:
    page = open_page(loading_sidecar.url)
    banner = page.wait_for_selector("#banner:not([hidden])")
    page.wait_for_selector("#banner-text:has-text('42%')")
    assert "stuck-loading-model is loading" in banner.inner_text()
    assert page.eval_on_selector("#banner-progress", "p => p.value") == pytest.approx(0.42)
    # Asking for a score meanwhile gives the sidecar's 503, shown as such.
    page.fill("#single-query", "yoga mat")
    page.fill("#single-title", "Yoga mat")
    page.press("#single-title", "Enter")
    error = page.wait_for_selector("#single-error:not([hidden])")
    assert "503" in error.inner_text() and "loading" in error.inner_text()
    page.screenshot(path=str(artifacts / "model-loading.png"))


def test_model_not_available_shows_the_reason(
    failed_sidecar: LiveSidecar, open_page: Any, artifacts: Path
) -> None:
    page = open_page(failed_sidecar.url)
    page.wait_for_selector("#banner[data-kind=failed]")
    assert FAILED_REASON in page.inner_text("#banner-text")
    assert "failed" in page.inner_text("#status")
    # Search still answers in the engine's order and says why.
    page.click("#tab-search")
    page.fill("#search-query", "espresso machine")
    page.press("#search-query", "Enter")
    page.wait_for_selector("#search-result:not([hidden])")
    assert "fallback" in page.inner_text("#search-summary")
    page.wait_for_function("() => document.querySelector('#search-engine img').naturalWidth > 0")
    page.screenshot(path=str(artifacts / "model-unavailable.png"))


def test_engine_down_shows_the_engines_error(minilm: Any, open_page: Any) -> None:
    from sidecar.app import create_app
    from sidecar.errors import ConfigError
    from sidecar.wiring import build_backend
    from tests.conftest import make_settings
    from tests.e2e.conftest import start_sidecar, stop_sidecar

    settings = make_settings(
        engine={"kind": "elasticsearch", "urls": ["http://127.0.0.1:9"], "retries": 0}
    )
    try:
        build_backend(settings)
    except ConfigError as exc:
        pytest.skip(f"no Elasticsearch backend in this build yet: {exc}")
    live = start_sidecar(create_app(settings, wait_for_model=True, scorer=minilm), minilm)
    try:
        page = open_page(live.url)
        page.wait_for_selector("#banner[data-kind=down]")
        page.click("#tab-search")
        page.fill("#search-query", "yoga mat")
        page.press("#search-query", "Enter")
        error = page.wait_for_selector("#search-error:not([hidden])")
        assert "503" in error.inner_text()
    finally:
        stop_sidecar(live)


def test_settings_are_remembered_and_tabs_work_by_keyboard(
    sidecar: LiveSidecar, open_page: Any
) -> None:
    page = open_page(sidecar.url)
    page.click("#advanced summary")
    assert page.input_value("#instruction").startswith("Given a web search query")
    page.click("#instruction-ecommerce")
    page.fill("#advanced-rules", "holiday")
    assert page.input_value("#search-rules") == "holiday"
    assert page.locator("#max-pixels").is_disabled()
    page.focus("#tab-single")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-batch"
    assert page.locator("#panel-batch").is_visible()

    page.reload()
    assert page.input_value("#instruction") == ECOMMERCE_INSTRUCTION
    assert page.input_value("#search-rules") == "holiday"
    assert page.locator("#panel-batch").is_visible()  # the last tab is remembered too


def test_narrow_screen_has_no_horizontal_scroll(
    sidecar: LiveSidecar, open_page: Any, artifacts: Path
) -> None:
    page = open_page(sidecar.url, width=375, height=800)
    page.click("#tab-search")
    page.fill("#search-window", "10")
    page.fill("#search-query", "wireless noise cancelling headphones")
    page.press("#search-query", "Enter")
    page.wait_for_selector("#search-result:not([hidden])")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    engine_box = page.locator("#search-engine").bounding_box()
    reranked_box = page.locator("#search-reranked").bounding_box()
    assert reranked_box["y"] > engine_box["y"] + engine_box["height"] - 1  # stacked, not squeezed
    page.screenshot(path=str(artifacts / "narrow.png"), full_page=False)
    for tab in ("single", "batch"):
        page.click(f"#tab-{tab}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_ui_serves_only_its_files(sidecar: LiveSidecar) -> None:
    with httpx.Client(base_url=sidecar.url) as http:
        root = http.get("/ui")
        assert root.status_code == 307 and root.headers["location"] == "ui/"
        index = http.get("/ui/")
        assert index.status_code == 200 and "Rerank playground" in index.text
        assert "script-src 'self'" in index.headers["content-security-policy"]
        assert http.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
        image = http.get("/ui/images/p00001.png")
        assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"
        for bad in (
            "/ui/images/..%2fcatalog.jsonl",
            "/ui/images/.hidden.png",
            "/ui/images/p99999.png",
            "/ui/conftest.py",
            "/ui/__init__.py",
        ):
            assert http.get(bad).status_code == 404, bad
        assert http.get("/ui/images/.hidden.png").json()["error"] == "not_found"
