"""Read a rules file and validate it, reporting every problem with its line and column.

Pure apart from reading the one file it is given: `parse_rules(text, name)` does the work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from sidecar.errors import ConfigError, InvalidRequest
from sidecar.rules.schema import RulesFile, fields_read
from sidecar.rules.variants import DEFAULT, assign


@dataclass(frozen=True)
class Problem:
    file: str
    line: int  # 1-based
    column: int  # 1-based
    path: str  # e.g. boosts[0].multiply
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.reason}"


class RulesError(ConfigError):
    """A rules file that does not validate; `problems` lists each error with its place."""

    code = "rules_invalid"

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(
            "rules do not validate:\n" + "\n".join(str(p) for p in problems),
            problems=[p.__dict__ for p in problems],
        )
        self.problems = list(problems)


@dataclass(frozen=True)
class LoadedRules:
    """One validated rules file, or one variant of it (`rules` then holds the variant's rules)."""

    rules: RulesFile
    version: str  # what a response reports as `rules_version`: "<variant>@<content hash>"
    source: str
    digest: str = ""  # short content hash of the file
    variant: str = DEFAULT

    def select(self, name: str | None, user_key: str | None = None) -> LoadedRules:
        """The rules for a request: variant `name`, else by the stable hash of `user_key`,
        else the default. An unknown name is the caller's error (422, field `rules`)."""
        if name is None:
            name = assign(self.rules.variants, user_key) if user_key is not None else DEFAULT
        if name == DEFAULT:
            return self
        if name not in {v.name for v in self.rules.variants}:
            known = ", ".join([DEFAULT, *(v.name for v in self.rules.variants)])
            raise InvalidRequest(f"unknown rules variant {name!r}; known: {known}", field="rules")
        return replace(
            self, rules=self.rules.variant(name), version=f"{name}@{self.digest}", variant=name
        )


def load_rules(path: Path) -> LoadedRules:
    return parse_rules(read_rules_text(path), str(path))


def read_rules_text(path: Path) -> str:
    """The file's text, or RulesError (unreadable, or not UTF-8: with the line and column)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise RulesError(
            [Problem(str(path), 1, 1, "", f"cannot read file: {exc.strerror}")]
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # a file of any bytes is refused with where, not a 500
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise RulesError(
            [Problem(str(path), line, col, "", f"not UTF-8: byte 0x{raw[exc.start]:02x}")]
        ) from exc
    return text


def parse_rules(text: str, name: str = "<rules>") -> LoadedRules:
    try:
        tree = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise RulesError([Problem(name, line, col, "", f"not valid YAML: {exc.problem}")]) from exc
    except YAMLError as exc:  # e.g. a control character the YAML reader refuses
        raise RulesError([Problem(name, 1, 1, "", f"not valid YAML: {exc}")]) from exc
    if not isinstance(tree, dict):
        raise RulesError([Problem(name, 1, 1, "", "a rules file is a mapping with `version: 1`")])
    try:
        rules = RulesFile.model_validate(_plain(tree))
    except ValidationError as exc:
        raise RulesError(_problems(exc, tree, name)) from exc
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return LoadedRules(rules=rules, version=f"{DEFAULT}@{digest}", source=name, digest=digest)


SCORE_FIELDS = frozenset({"model_score", "engine_score", "blended_score"})
# what every hit's conditions read of product types (sidecar.product_types)
TYPE_FIELDS = frozenset({"query_type", "product_type", "type_match"})


def check_rules(text: str, name: str, known_fields: Collection[str] | None = None) -> list[Problem]:
    """Every problem of a rules text: validation errors, then (given the field map's business
    fields) conditions on fields the documents do not carry. Empty when the file is good."""
    try:
        loaded = parse_rules(text, name)
    except RulesError as exc:
        return exc.problems
    if known_fields is None:
        return []
    tree = YAML(typ="rt").load(text)
    known = SCORE_FIELDS | TYPE_FIELDS | set(known_fields)
    problems = []
    for keys, names in fields_read(loaded.rules).items():
        unknown = sorted(names - known)
        if unknown:
            line, col, path = _locate(tree, keys)
            problems.append(
                Problem(
                    name,
                    line,
                    col,
                    path,
                    f"field {', '.join(map(repr, unknown))} is not in the field map "
                    f"(fields.business: {', '.join(sorted(known_fields))})",
                )
            )
    return problems


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _problems(exc: ValidationError, tree: Any, name: str) -> list[Problem]:
    problems: dict[tuple[int, int, str], Problem] = {}
    for err in exc.errors():
        keys = [part for part in err["loc"] if _is_data_key(part)]
        line, col, path = _locate(tree, keys)
        reason = _reason(err)
        key = (line, col, reason)
        problems.setdefault(key, Problem(name, line, col, path, reason))
    return sorted(problems.values(), key=lambda p: (p.line, p.column))


def _is_data_key(part: Any) -> bool:
    # pydantic adds union member names ("FieldCondition", "function-after[...]") to the loc
    return isinstance(part, int) or (
        isinstance(part, str) and not part[:1].isupper() and "[" not in part
    )


def _locate(tree: Any, keys: Sequence[Any]) -> tuple[int, int, str]:  # ruamel nodes carry .lc
    """Line and column of the deepest node on `keys` that exists in the YAML tree."""
    line, col, path = 1, 1, ""
    node: Any = tree
    for key in keys:
        if isinstance(node, dict) and key in node:
            line, col = _lc(node).key(key)
            line, col, path, node = line + 1, col + 1, f"{path}.{key}" if path else key, node[key]
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            line, col = _lc(node).item(key)
            line, col, path, node = line + 1, col + 1, f"{path}[{key}]", node[key]
        else:
            path = f"{path}.{key}" if path and isinstance(key, str) else f"{path}{_part(key)}"
            break
    return line, col, path


def _lc(node: Any) -> Any:
    """ruamel's line/column record of a mapping or sequence node."""
    return node.lc


def _part(key: Any) -> str:
    return f"[{key}]" if isinstance(key, int) else str(key)


def _reason(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown key {err['loc'][-1]!r}"
    if kind == "missing":
        return f"missing required key {err['loc'][-1]!r}"
    if kind == "literal_error" and err["loc"][-1] == "version":
        return "version must be 1"
    if kind == "model_type":
        return f"expected a mapping, got {type(err.get('input')).__name__}"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")
