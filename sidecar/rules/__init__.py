"""Merchandiser rules: YAML schema, the pure ranking, and the store that loads and reloads."""

from sidecar.rules.loader import (
    LoadedRules,
    Problem,
    RulesError,
    check_rules,
    load_rules,
    parse_rules,
)
from sidecar.rules.ranking import Candidate, Fired, Outcome, Ranked, apply
from sidecar.rules.schema import RulesFile

__all__ = [
    "Candidate",
    "Fired",
    "LoadedRules",
    "Outcome",
    "Problem",
    "Ranked",
    "RulesError",
    "RulesFile",
    "apply",
    "check_rules",
    "load_rules",
    "parse_rules",
]
