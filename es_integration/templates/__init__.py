"""Index templates the engine runs: settings and mappings, as JSON files beside this module.

`products.json` uses only what every engine's core has; `products-cjk.json` is the same
mapping plus a `.cjk` sub-field (the `cjk` analyzer: Chinese, Japanese and Korean text in
character pairs) on the searched text fields, for an engine with the analysis-common module
(OpenSearch's distributions, Elasticsearch's full one; not Elasticsearch's integ-test-zip).
"""

from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent
PRODUCTS_TEMPLATE = TEMPLATES_DIR / "products.json"
PRODUCTS_CJK_TEMPLATE = TEMPLATES_DIR / "products-cjk.json"
CJK_SUBFIELD = "cjk"  # the sub-field products-cjk.json adds: `title.cjk`, `brand.cjk`, ...
