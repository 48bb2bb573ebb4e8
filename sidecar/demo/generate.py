"""Generate the bundled demo catalog: catalog.jsonl, queries.json, queries_zh.json, images/.

    python -m sidecar.demo.generate                # rewrite sidecar/demo/
    python -m sidecar.demo.generate --out /tmp/x   # somewhere else
    python -m sidecar.demo.generate --no-images    # JSON only, no Pillow needed

The output is a pure function of the seed, `taxonomy.json` and `taxonomy_zh.json`: one
random.Random per language slice drives every choice of that slice, in a fixed order, and
nothing depends on the clock or on hash ordering, so two runs give byte-identical files (with
the same Pillow/zlib for the PNGs). The English slice is drawn first with the seed itself, so
adding the Chinese slice (its own generator, seeded from the seed and "zh") changed no English
product or id; one English family, "iphone 15 pro max case", now also judges the Chinese
iPhone cases its words reach. Pillow is imported only to draw images.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sidecar.demo.taxonomy import SLICES, ProductType, Slice

if TYPE_CHECKING:  # Pillow is imported lazily: the JSON output does not need it
    from PIL import Image, ImageDraw

SEED = 20240611
DEMO_DIR = Path(__file__).resolve().parent
IMAGE_SIZE = 160

# Colour name -> RGB used to paint the pictogram.
COLORS: dict[str, tuple[int, int, int]] = {
    "Beige": (222, 203, 164),
    "Black": (38, 38, 40),
    "Blue": (45, 110, 200),
    "Brown": (120, 78, 45),
    "Charcoal": (70, 72, 78),
    "Clear": (196, 222, 232),
    "Gray": (150, 152, 156),
    "Green": (60, 150, 80),
    "Navy": (30, 45, 95),
    "Olive": (110, 115, 55),
    "Orange": (235, 125, 35),
    "Pink": (235, 140, 175),
    "Purple": (125, 75, 165),
    "Red": (200, 45, 45),
    "Silver": (190, 192, 198),
    "Tan": (196, 154, 108),
    "Teal": (30, 140, 140),
    "White": (250, 250, 250),
    "Yellow": (240, 200, 40),
}


# --- catalog -------------------------------------------------------------------


def _price(rng: random.Random, low: float, high: float) -> float:
    # Shop-style prices: whole dollars plus a .99/.49/.95/.00 ending.
    dollars = math.floor(rng.uniform(low, high))
    return round(dollars + rng.choice((0.99, 0.99, 0.99, 0.49, 0.95, 0.0)), 2)


def _sales(rng: random.Random) -> int:
    # Log-normal: median around 50, a long tail of a few best sellers.
    return int(rng.lognormvariate(3.9, 1.35))


def _make_product(
    rng: random.Random, ptype: ProductType, taken_titles: set[str], part: Slice
) -> dict:
    brands = ptype.brands or part.category_brands[ptype.category]
    # Redraw a few times to avoid duplicate titles; the draw count is part of
    # the deterministic sequence, so this stays reproducible.
    for _ in range(20):
        values = {"brand": rng.choice(brands), "color": rng.choice(ptype.colors)}
        for slot in sorted(ptype.slots):
            values[slot] = rng.choice(ptype.slots[slot])
        # the text says the colour in the slice's language; the `color` field keeps its name
        shown = {**values, "color": part.color_names.get(values["color"], values["color"])}
        title = rng.choice(ptype.titles).format_map(shown)
        if title not in taken_titles:
            break
    taken_titles.add(title)
    points = rng.sample(ptype.points, rng.randint(2, min(5, len(ptype.points))))
    return {
        "title": title,
        "selling_points": [p.format_map(shown) for p in points],
        "brand": values["brand"],
        "category": ptype.category,
        "price": _price(rng, *ptype.price),
        "sales": _sales(rng),
        "in_stock": rng.random() < 0.9,
        "rating": round(min(5.0, max(1.0, rng.gauss(4.2, 0.5))), 1),
        "color": values["color"],
    }


def _rng(seed: int, language: str, batch: int) -> random.Random:
    """The generator of one slice's batch. The English first batch keeps the generator it always
    had; every other slice and batch gets its own (str seeds are hashed with SHA-512: the same in
    every run), so adding one changes no earlier draw."""
    if batch == 1:
        return random.Random(seed if language == "en" else f"{seed}:{language}")
    return random.Random(f"{seed}:{language}:{batch}")


def build_catalog(seed: int = SEED) -> tuple[list[dict], dict[str, list[dict]]]:
    """Return (products sorted by id, query families with ids per language)."""
    products: list[dict] = []
    ids_by_type: dict[str, list[str]] = {}
    taken_titles: set[str] = set()
    batches = sorted({t.batch for part in SLICES for t in part.types})
    for batch in batches:  # each batch numbered after the ones before: no id moves
        for part in SLICES:
            rng = _rng(seed, part.language, batch)
            drafts: list[tuple[str, dict]] = []
            for ptype in part.types:
                if ptype.batch != batch:
                    continue
                for _ in range(ptype.count):
                    product = _make_product(rng, ptype, taken_titles, part)
                    drafts.append((ptype.key, {**product, "product_type": ptype.product_type}))
            # Shuffle before numbering so ids do not give the category away.
            rng.shuffle(drafts)

            for n, (type_key, fields) in enumerate(drafts, start=len(products) + 1):
                pid = f"p{n:05d}"
                # product_type last: the fields before it read as they did before it was added
                kind = fields.pop("product_type")
                products.append(
                    {"id": pid, **fields, "image_url": f"images/{pid}.png", "product_type": kind}
                )
                ids_by_type.setdefault(type_key, []).append(pid)

    # A family may name types of the other slice where its words reach them (the Chinese
    # iPhone 15 Pro Max cases for "iphone 15 pro max case"), so families are resolved last.
    queries: dict[str, list[dict]] = {}
    for part in SLICES:
        queries[part.language] = [
            {
                "query": family.query,
                "category": family.category,
                "relevant_ids": sorted(i for key in family.relevant for i in ids_by_type[key]),
                "near_miss_ids": sorted(i for key in family.near_miss for i in ids_by_type[key]),
            }
            for family in part.queries
        ]
    return products, queries


# --- images --------------------------------------------------------------------

# Palette slots of every image.
BG, MAIN, SHADE, LIGHT, GROUND, WHITE, DARK = range(7)


def _palette(rgb: tuple[int, int, int]) -> list[int]:
    def mix(target: tuple[int, int, int], t: float) -> tuple[int, ...]:
        return tuple(round(c + (g - c) * t) for c, g in zip(rgb, target, strict=True))

    entries = [
        (246, 245, 240),  # BG: light warm gray
        rgb,  # MAIN: the product's colour
        mix((0, 0, 0), 0.45),  # SHADE: outlines and details
        mix((255, 255, 255), 0.55),  # LIGHT: highlights
        (222, 221, 214),  # GROUND: drop shadow
        (255, 255, 255),  # WHITE: screens, labels
        (55, 55, 60),  # DARK: fixed dark details
    ]
    return [c for entry in entries for c in entry]


def _boot(d: ImageDraw.ImageDraw) -> None:
    d.polygon(
        [(48, 28), (88, 28), (90, 84), (128, 96), (138, 108), (138, 120), (40, 120), (44, 80)],
        fill=MAIN,
        outline=SHADE,
        width=3,
    )
    d.rectangle((38, 116, 140, 128), fill=SHADE)
    d.rectangle((46, 28, 90, 38), fill=LIGHT, outline=SHADE, width=2)
    for y in (50, 62, 74):
        d.line((62, y, 84, y - 4), fill=LIGHT, width=3)


def _jacket(d: ImageDraw.ImageDraw) -> None:
    d.polygon(
        [(52, 34), (25, 60), (22, 122), (40, 122), (50, 74)], fill=MAIN, outline=SHADE, width=3
    )
    d.polygon(
        [(108, 34), (135, 60), (138, 122), (120, 122), (110, 74)], fill=MAIN, outline=SHADE, width=3
    )
    d.rectangle((48, 34, 112, 134), fill=MAIN, outline=SHADE, width=3)
    d.ellipse((60, 18, 100, 48), fill=LIGHT, outline=SHADE, width=3)
    d.line((80, 46, 80, 134), fill=SHADE, width=3)
    d.rectangle((56, 96, 72, 102), fill=SHADE)
    d.rectangle((88, 96, 104, 102), fill=SHADE)


def _sock(d: ImageDraw.ImageDraw) -> None:
    d.polygon(
        [(58, 24), (98, 24), (98, 92), (128, 104), (134, 124), (118, 136), (72, 132), (58, 112)],
        fill=MAIN,
        outline=SHADE,
        width=3,
    )
    d.rectangle((58, 24, 98, 42), fill=LIGHT, outline=SHADE, width=3)
    d.pieslice((112, 100, 144, 136), 270, 90, fill=SHADE)
    d.pieslice((50, 104, 82, 136), 90, 180, fill=SHADE)


def _phone(d: ImageDraw.ImageDraw) -> None:
    d.rounded_rectangle((48, 18, 112, 142), radius=12, fill=MAIN, outline=SHADE, width=3)
    d.rectangle((56, 32, 104, 124), fill=WHITE)
    d.ellipse((74, 128, 86, 138), fill=LIGHT)
    d.rectangle((70, 23, 90, 27), fill=SHADE)


def _laptop(d: ImageDraw.ImageDraw) -> None:
    d.rounded_rectangle((34, 30, 126, 102), radius=6, fill=MAIN, outline=SHADE, width=3)
    d.rectangle((42, 38, 118, 94), fill=WHITE)
    d.polygon([(26, 104), (134, 104), (146, 124), (14, 124)], fill=MAIN, outline=SHADE, width=3)
    d.rectangle((66, 110, 94, 116), fill=SHADE)


def _headphones(d: ImageDraw.ImageDraw) -> None:
    d.arc((32, 22, 128, 118), 180, 360, fill=MAIN, width=12)
    d.arc((32, 22, 128, 118), 180, 360, fill=SHADE, width=3)
    d.line((32, 70, 32, 86), fill=MAIN, width=12)
    d.line((128, 70, 128, 86), fill=MAIN, width=12)
    for x in (20, 108):
        d.rounded_rectangle((x, 74, x + 32, 128), radius=10, fill=MAIN, outline=SHADE, width=3)
    d.rounded_rectangle((44, 82, 52, 120), radius=3, fill=SHADE)
    d.rounded_rectangle((108, 82, 116, 120), radius=3, fill=SHADE)


def _pot(d: ImageDraw.ImageDraw) -> None:
    d.rectangle((16, 72, 144, 82), fill=SHADE)
    d.rounded_rectangle((34, 62, 126, 128), radius=10, fill=MAIN, outline=SHADE, width=3)
    d.ellipse((30, 50, 130, 72), fill=LIGHT, outline=SHADE, width=3)
    d.rounded_rectangle((70, 38, 90, 54), radius=5, fill=SHADE)


def _armchair(d: ImageDraw.ImageDraw) -> None:
    d.rounded_rectangle((40, 28, 120, 96), radius=14, fill=MAIN, outline=SHADE, width=3)
    d.rounded_rectangle((38, 84, 122, 112), radius=6, fill=LIGHT, outline=SHADE, width=3)
    for x in (22, 116):
        d.rounded_rectangle((x, 62, x + 22, 116), radius=8, fill=MAIN, outline=SHADE, width=3)
    for x in (32, 122):
        d.rectangle((x, 116, x + 6, 134), fill=DARK)


def _bottle(d: ImageDraw.ImageDraw) -> None:
    d.rounded_rectangle((52, 58, 108, 138), radius=10, fill=MAIN, outline=SHADE, width=3)
    d.rectangle((70, 42, 90, 60), fill=LIGHT, outline=SHADE, width=2)
    d.rectangle((60, 30, 100, 42), fill=DARK)
    d.rectangle((100, 30, 118, 36), fill=DARK)
    d.rectangle((60, 80, 100, 116), fill=WHITE)


def _teddy(d: ImageDraw.ImageDraw) -> None:
    for box in ((38, 20, 62, 44), (98, 20, 122, 44)):
        d.ellipse(box, fill=MAIN, outline=SHADE, width=3)
    d.ellipse((40, 72, 120, 140), fill=MAIN, outline=SHADE, width=3)
    d.ellipse((44, 24, 116, 90), fill=MAIN, outline=SHADE, width=3)
    d.ellipse((64, 56, 96, 84), fill=LIGHT)
    d.ellipse((62, 44, 70, 52), fill=DARK)
    d.ellipse((90, 44, 98, 52), fill=DARK)
    d.ellipse((75, 60, 85, 68), fill=DARK)


def _dumbbell(d: ImageDraw.ImageDraw) -> None:
    d.rectangle((30, 74, 130, 86), fill=DARK)
    for x0, x1, y0, y1 in (
        (22, 44, 40, 120),
        (44, 58, 52, 108),
        (116, 138, 40, 120),
        (102, 116, 52, 108),
    ):
        d.rounded_rectangle((x0, y0, x1, y1), radius=5, fill=MAIN, outline=SHADE, width=3)


def _paw(d: ImageDraw.ImageDraw) -> None:
    d.ellipse((48, 72, 112, 130), fill=MAIN, outline=SHADE, width=3)
    for box in ((26, 52, 50, 82), (52, 28, 76, 62), (84, 28, 108, 62), (110, 52, 134, 82)):
        d.ellipse(box, fill=MAIN, outline=SHADE, width=3)


def _mug(d: ImageDraw.ImageDraw) -> None:
    d.ellipse((92, 64, 132, 110), outline=SHADE, width=12)
    d.ellipse((94, 66, 130, 108), outline=MAIN, width=7)
    d.rounded_rectangle((36, 52, 106, 132), radius=10, fill=MAIN, outline=SHADE, width=3)
    d.ellipse((40, 50, 102, 62), fill=SHADE)
    for x in (54, 72, 90):
        d.arc((x - 8, 18, x + 8, 46), 100, 260, fill=SHADE, width=3)


def _tent(d: ImageDraw.ImageDraw) -> None:
    d.polygon([(80, 22), (142, 126), (18, 126)], fill=MAIN, outline=SHADE, width=3)
    d.polygon([(80, 58), (104, 126), (56, 126)], fill=SHADE)
    d.line((80, 22, 80, 58), fill=LIGHT, width=3)
    d.line((10, 128, 150, 128), fill=DARK, width=3)


def _backpack(d: ImageDraw.ImageDraw) -> None:
    d.arc((60, 16, 100, 48), 180, 360, fill=SHADE, width=5)
    d.rounded_rectangle((42, 30, 118, 136), radius=20, fill=MAIN, outline=SHADE, width=3)
    d.rounded_rectangle((54, 86, 106, 128), radius=8, fill=LIGHT, outline=SHADE, width=3)
    d.line((54, 100, 106, 100), fill=SHADE, width=3)


PICTOGRAMS = {
    "Footwear": _boot,
    "Outdoor Apparel": _jacket,
    "Socks & Accessories": _sock,
    "Phones & Accessories": _phone,
    "Laptops & Computers": _laptop,
    "Audio": _headphones,
    "Kitchen": _pot,
    "Home & Furniture": _armchair,
    "Beauty & Personal Care": _bottle,
    "Toys & Games": _teddy,
    "Sports & Fitness": _dumbbell,
    "Pet Supplies": _paw,
    "Grocery & Coffee": _mug,
    "Camping Gear": _tent,
    "Bags & Luggage": _backpack,
}


def draw_image(category: str, color: str) -> Image.Image:
    """The category's pictogram in `color`: a small palette ("P") image."""
    from PIL import Image, ImageDraw

    img = Image.new("P", (IMAGE_SIZE, IMAGE_SIZE), BG)
    img.putpalette(_palette(COLORS[color]))
    d = ImageDraw.Draw(img)
    d.ellipse((28, 130, 132, 146), fill=GROUND)
    PICTOGRAMS[category](d)
    return img


# --- output --------------------------------------------------------------------


QUERY_FILES = {"en": "queries.json", "zh": "queries_zh.json"}  # language -> file


def write(
    out_dir: Path, seed: int = SEED, images: bool = True
) -> tuple[list[dict], dict[str, list[dict]]]:
    """Write catalog.jsonl, queries.json, queries_zh.json and (optionally) images/ into out_dir."""
    products, queries = build_catalog(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "catalog.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for product in products:
            f.write(json.dumps(product, ensure_ascii=False) + "\n")
    for language, families in queries.items():
        with open(out_dir / QUERY_FILES[language], "w", encoding="utf-8", newline="\n") as f:
            json.dump(families, f, indent=2, ensure_ascii=False)
            f.write("\n")
    if images:
        image_dir = out_dir / "images"
        image_dir.mkdir(exist_ok=True)
        # Drop old product images so ones of products that no longer exist
        # do not linger; touch nothing else in the folder.
        for stale in image_dir.glob("p[0-9]*.png"):
            stale.unlink()
        # Same category and colour give the same picture: draw each once.
        cache: dict[tuple[str, str], bytes] = {}
        for product in products:
            key = (product["category"], product["color"])
            if key not in cache:
                path = image_dir / f"{product['id']}.png"
                draw_image(*key).save(path, format="PNG", optimize=True)
                cache[key] = path.read_bytes()
            else:
                (image_dir / f"{product['id']}.png").write_bytes(cache[key])
    return products, queries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=DEMO_DIR, help="output directory (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--no-images", action="store_true", help="write only the JSON files")
    args = parser.parse_args(argv)
    products, queries = write(args.out, args.seed, images=not args.no_images)
    categories = {p["category"] for p in products}
    families = ", ".join(f"{len(q)} {language}" for language, q in queries.items())
    print(
        f"wrote {len(products)} products in {len(categories)} categories "
        f"and query families ({families}) to {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
