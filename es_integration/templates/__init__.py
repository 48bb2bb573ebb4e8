"""Index templates the engine runs: settings and mappings, as JSON files beside this module.

`products.json` uses only what every engine's core has (the `standard` analyzer: no stemming).
`products-cjk.json` is the same mapping for an engine with the analysis-common module
(OpenSearch's distributions, Elasticsearch's full one; not Elasticsearch's integ-test-zip): English
stemming (the `english` analyzer) on the descriptive text fields and on catalog strings mapped
dynamically, and a `.cjk` sub-field (the `cjk` analyzer: Chinese, Japanese and Korean text in
character pairs) on the searched text fields. The name predates the stemming; it is kept because
commands, benchmarks and documents name the file.
"""

from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent
PRODUCTS_TEMPLATE = TEMPLATES_DIR / "products.json"
PRODUCTS_CJK_TEMPLATE = TEMPLATES_DIR / "products-cjk.json"
CJK_SUBFIELD = "cjk"  # the sub-field products-cjk.json adds: `title.cjk`, `brand.cjk`, ...
# The analyzers products-cjk.json names that the engines' core lacks (both in analysis-common):
# an engine that refuses one of these gets products.json instead.
ANALYSIS_COMMON_ANALYZERS = ("english", "cjk")
