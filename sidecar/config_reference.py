"""The configuration reference page (docs/configuration.md), generated from the settings models
in sidecar/config.py: per section a table of key, type, default, environment variable and
description, then every default as one YAML file that `load_settings` accepts.

    python -m sidecar.config_reference            # (re)writes docs/configuration.md
    python -m sidecar.config_reference --check    # exit 1 when the page is out of date
    python -m sidecar.config_reference OUT.md     # writes it elsewhere

The page is never edited by hand: a setting's text is its field's `description`, a section's
its model's docstring. tests/unit/test_config_reference.py fails when the committed page and
this module's output differ.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import types
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python
from ruamel.yaml import YAML

from sidecar.config import Settings

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
COMMAND = "python -m sidecar.config_reference"
ENV_PREFIX = str(Settings.model_config.get("env_prefix"))
ENV_DELIMITER = str(Settings.model_config.get("env_nested_delimiter"))
LINE = 100  # a list or mapping longer than this on one line is written as a block in the YAML

INTRO = f"""\
# Configuration

<!-- Generated from sidecar/config.py by `{COMMAND}`:
edit a description there and run it again. A test fails while this page and the code differ. -->

The sidecar reads one YAML file (`--config`) and the environment, once, at start-up. Highest
first:

1. the environment: `RERANK_` and the key's path in capitals, `__` between levels
   (`RERANK_CACHE__KIND=redis`). A variable sets its one key whatever its value, even the
   default's, and leaves the file's other keys of that section alone. Lists and mappings are
   JSON: `RERANK_ENGINE__URLS='["https://es-1:9200"]'`;
2. the YAML file;
3. the defaults below, which are the embedded mode: the bundled demo catalog, an in-process
   cache, MiniLM on the CPU.

Unknown keys are errors, and a file that does not validate is refused with the dotted path of
each wrong key. Every default together, as a file, is at the end of this page.
"""


def render() -> str:
    """The whole page."""
    parts = [INTRO]
    top = [(name, info) for name, info in Settings.model_fields.items() if not _section(info)]
    parts.append(_heading("Top level", Settings.__doc__ or "", top, ()))
    for name, info in Settings.model_fields.items():
        model = _section(info)
        if model is not None:
            rows = list(model.model_fields.items())
            parts.append(_heading(f"`{name}`", model.__doc__ or "", rows, (name,)))
    parts.append(
        "## Every default as a file\n\n"
        "The same values as the tables, as a file `--config` accepts (the embedded mode).\n\n"
        f"```yaml\n{defaults_yaml()}```\n"
    )
    return "\n".join(parts)


def settings_paths() -> Iterator[tuple[str, ...]]:
    """The path of every setting (not of the sections that hold them), e.g. ("cache", "kind")."""
    for name, info in Settings.model_fields.items():
        model = _section(info)
        if model is None:
            yield (name,)
        else:
            yield from ((name, key) for key in model.model_fields)


def env_name(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + ENV_DELIMITER.join(path).upper()


def defaults() -> dict[str, Any]:
    """Every default as plain data (what a file would say), read from the models, not from the
    environment."""
    out: dict[str, Any] = {}
    for name, info in Settings.model_fields.items():
        model = _section(info)
        if model is None:
            out[name] = _plain(info)
        else:
            out[name] = {key: _plain(field) for key, field in model.model_fields.items()}
    return out


def defaults_yaml() -> str:
    lines: list[str] = []
    for name, value in defaults().items():
        if isinstance(value, dict) and _section(Settings.model_fields[name]) is not None:
            lines.append(f"{name}:")
            for key, item in value.items():
                lines.extend(_yaml_item(key, item, "  "))
        else:
            lines.extend(_yaml_item(name, value, ""))
    return "\n".join(lines) + "\n"


def _heading(title: str, doc: str, rows: list[tuple[str, FieldInfo]], path: tuple[str, ...]) -> str:
    text = [f"## {title}\n", inspect.cleandoc(doc) + "\n"]
    text.append("| key | type | default | environment | description |")
    text.append("| --- | --- | --- | --- | --- |")
    for name, info in rows:
        if not info.description:
            raise ValueError(f"{'.'.join((*path, name))} has no description in sidecar/config.py")
        cells = [
            f"`{'.'.join((*path, name))}`",
            _type(info),
            f"`{_inline(_plain(info))}`",
            f"`{env_name((*path, name))}`",
            info.description,
        ]
        text.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(text) + "\n"


def _section(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _plain(info: FieldInfo) -> Any:
    value = info.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return to_jsonable_python(value)


def _type(info: FieldInfo) -> str:
    """The field's type in words, with its bounds (`integer, >= 0, <= 10`)."""
    bounds = [
        f"{sign} {_inline(getattr(item, attr))}"
        for item in info.metadata
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
        if getattr(item, attr, None) is not None
    ]
    return ", ".join([_type_name(info.annotation), *bounds])


_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
    SecretStr: "secret string",
}


def _type_name(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        named = [_type_name(a) for a in args if a is not type(None)]
        optional = len(named) < len(args)
        return " or ".join(named) + (" or null" if optional else "")
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}s"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if annotation in _NAMES:
        return _NAMES[annotation]
    raise ValueError(f"no name for the type {annotation!r}: add it to _NAMES")


def _yaml_item(key: str, value: Any, indent: str) -> list[str]:
    line = f"{indent}{key}: {_inline(value)}"
    if len(line) <= LINE or not isinstance(value, list):
        return [line]
    return [f"{indent}{key}:", *(f"{indent}  - {_inline(item)}" for item in value)]


def _inline(value: Any) -> str:
    """`value` as a YAML flow scalar, list or mapping, plain where YAML reads it back as the
    same value and JSON (which YAML also reads) where not."""
    if isinstance(value, list):
        text = "[" + ", ".join(_inline(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{_inline(k)}: {_inline(v)}" for k, v in value.items()) + "}"
    elif value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    return text if _reads_back(text, value) else json.dumps(value, ensure_ascii=False)


def _reads_back(text: str, value: Any) -> bool:
    try:
        loaded = YAML(typ="safe").load(StringIO(f"k: {text}\n"))
    except Exception:  # not YAML at all: the caller writes JSON instead
        return False
    return isinstance(loaded, dict) and loaded.get("k") == value and _same_types(loaded["k"], value)


def _same_types(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return all(_same_types(a[k], b[k]) for k in b if k in a)
    return type(a) is type(b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND, description="Write the configuration reference page from sidecar/config.py."
    )
    parser.add_argument("page", nargs="?", type=Path, default=PAGE, help=f"default: {PAGE}")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when the page differs"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.page.read_text(encoding="utf-8") if args.page.exists() else ""
        if current != text:
            print(f"{args.page} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    args.page.write_text(text, encoding="utf-8")
    print(f"wrote {args.page}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
