"""Index templates the engine runs: settings and mappings, as JSON files beside this module.

`products.json` uses only what every engine's core has (the `standard` analyzer: no stemming).
`products-cjk.json` is the same mapping for an engine with the analysis-common module
(OpenSearch's distributions, Elasticsearch's full one; not Elasticsearch's integ-test-zip): English
stemming (the `english` analyzer) on the descriptive text fields and on catalog strings mapped
dynamically, and a `.cjk` sub-field (the `cjk` analyzer: Chinese, Japanese and Korean text in
character pairs) on the searched text fields. The name predates the stemming; it is kept because
commands, benchmarks and documents name the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TEMPLATES_DIR = Path(__file__).resolve().parent
PRODUCTS_TEMPLATE = TEMPLATES_DIR / "products.json"
PRODUCTS_CJK_TEMPLATE = TEMPLATES_DIR / "products-cjk.json"
CJK_SUBFIELD = "cjk"  # the sub-field products-cjk.json adds: `title.cjk`, `brand.cjk`, ...
# The analyzers products-cjk.json names that the engines' core lacks (both in analysis-common):
# an engine that refuses one of these gets products.json instead.
ANALYSIS_COMMON_ANALYZERS = ("english", "cjk")


def with_vectors(template: dict[str, Any], engine: str, field: str, dims: int) -> dict[str, Any]:
    """`template` with a vector field for the hybrid first stage's vector leg: Elasticsearch's
    `dense_vector` (indexed, HNSW, cosine), or OpenSearch's `knn_vector` (the k-NN plugin, its
    Lucene engine: HNSW with efficient filtering, cosine similarity) and `index.knn: true`.
    Cosine, not dot product: the vectors are normalised, but shared ones are rounded through
    float16 and no longer exactly unit length, which Elasticsearch's `dot_product` refuses."""
    out = json.loads(json.dumps(template))  # a copy
    properties = out.setdefault("mappings", {}).setdefault("properties", {})
    if engine == "opensearch":
        out.setdefault("settings", {})["index.knn"] = True
        properties[field] = {
            "type": "knn_vector",
            "dimension": dims,
            "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene"},
        }
    else:
        properties[field] = {
            "type": "dense_vector",
            "dims": dims,
            "index": True,
            "similarity": "cosine",
        }
    return out
