"""The live rules: loaded at start, swapped whole on reload, the last good version kept.

A request takes one `LoadedRules` reference at its start and uses only that, so a reload can
never hand it half of one version and half of another: the swap is one attribute assignment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from sidecar.rules.loader import LoadedRules, Problem, RulesError, load_rules

log = logging.getLogger(__name__)

DEFAULT_RULES = Path(__file__).with_name("default.yaml")


class RuleStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else DEFAULT_RULES
        self.current: LoadedRules = load_rules(self.path)  # start-up: a bad file stops the start
        self.last_errors: list[Problem] = []
        self.loaded_at = time.time()
        self.rejected_at: float | None = None
        self._mtime = self._stat()
        self.watching = False  # true while `watch` polls the file

    def reload(self) -> LoadedRules:
        """Load the file again; on errors keep the live rules, remember and raise the errors."""
        try:
            loaded = load_rules(self.path)
        except RulesError as exc:
            self.last_errors, self.rejected_at = exc.problems, time.time()
            log.error(
                "rules reload rejected; the last good rules stay live:\n%s",
                "\n".join(str(p) for p in exc.problems),
            )
            raise
        self.current, self.last_errors, self.loaded_at = loaded, [], time.time()
        log.info("rules reloaded: %s", loaded.version)
        return loaded

    def _stat(self) -> int:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return 0

    async def watch(self, interval_s: float) -> None:
        """Poll the file's mtime (works on ConfigMap symlink swaps, where inotify is fragile).
        Nothing a file holds ends the loop: an unexpected error is logged and polling goes on;
        `watching` tells /readyz whether the loop runs."""
        self.watching = True
        try:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    self._poll()
                except Exception:
                    log.exception("rules watcher: unexpected error; still watching")
        finally:
            self.watching = False

    def _poll(self) -> None:
        mtime = self._stat()
        if mtime and mtime != self._mtime:
            self._mtime = mtime
            try:
                self.reload()
            except RulesError:
                pass  # logged and kept in last_errors; the last good rules stay live

    def variant(self, name: str | None, user_key: str | None = None) -> LoadedRules:
        """The rules a request runs with: variant `name`, else by the stable hash of
        `user_key`, else the default (see LoadedRules.select)."""
        return self.current.select(name, user_key)

    def describe(self) -> dict[str, object]:
        """What GET /admin/rules shows."""
        live = self.current
        return {
            "version": live.version,
            "digest": live.digest,
            "source": live.source,
            "loaded_at": self.loaded_at,
            "variants": [{"name": "default", "share": _default_share(live)}]
            + [{"name": v.name, "share": v.share} for v in live.rules.variants],
            "last_errors": [str(p) for p in self.last_errors],
            "rules": live.rules.model_dump(mode="json", by_alias=True, exclude_none=True),
            "rejected_at": self.rejected_at,
        }


def _default_share(live: LoadedRules) -> float:
    return round(max(0.0, 1.0 - sum(v.share for v in live.rules.variants)), 9)
