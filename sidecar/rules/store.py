"""The live rules: loaded at start, swapped whole on reload, the last good version kept.

A request takes one `LoadedRules` reference at its start and uses only that, so a reload can
never hand it half of one version and half of another.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from sidecar.errors import InvalidRequest
from sidecar.rules.loader import LoadedRules, Problem, RulesError, load_rules

log = logging.getLogger(__name__)

DEFAULT_RULES = Path(__file__).with_name("default.yaml")


class RuleStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else DEFAULT_RULES
        self.current: LoadedRules = load_rules(self.path)  # start-up: a bad file stops the start
        self.last_errors: list[Problem] = []
        self._mtime = self._stat()

    def reload(self) -> LoadedRules:
        """Load the file again; on errors keep the live rules, remember and raise the errors."""
        try:
            loaded = load_rules(self.path)
        except RulesError as exc:
            self.last_errors = exc.problems
            log.error("rules reload rejected", extra={"problems": [str(p) for p in exc.problems]})
            raise
        self.current, self.last_errors = loaded, []
        log.info("rules reloaded", extra={"rules_version": loaded.version})
        return loaded

    def _stat(self) -> float:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return 0

    async def watch(self, interval_s: float) -> None:
        """Poll the file's mtime (works on ConfigMap symlink swaps, where inotify is fragile)."""
        while True:
            await asyncio.sleep(interval_s)
            mtime = self._stat()
            if mtime and mtime != self._mtime:
                self._mtime = mtime
                try:
                    self.reload()
                except RulesError:
                    pass  # logged and kept in last_errors; the last good rules stay live

    def variant(self, name: str | None, user_key: str | None = None) -> LoadedRules:
        """The rules a request runs with. Only the live default exists until variants are
        configured; asking for another name is the caller's error."""
        if name in (None, "default"):
            return self.current
        raise InvalidRequest(f"unknown rules variant {name!r}; known: default", field="rules")
