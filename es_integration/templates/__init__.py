"""Index templates the engine runs: settings and mappings, as JSON files beside this module."""

from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent
PRODUCTS_TEMPLATE = TEMPLATES_DIR / "products.json"
