"""MkDocs hook: the repository files outside docs/ that the pages link to, made part of the site.

The benchmarks and the fault suite are documented beside their code, in bench/README.md with
their plots in bench/results/, and the pages link to them as the repository lays them out
(`../bench/README.md` from a page in docs/). MkDocs only knows the files under `docs_dir`, so
such a link would be a "not found" warning, which strict mode turns into a failed build. This hook
registers the files named in OUTSIDE under that same relative path, read from where they are, and
writes them to `bench/...` in the site. A link to one of them resolves and stays checked; a link
to any other file outside docs/ is still the warning that fails the build.
"""

from __future__ import annotations

import glob
import os

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files, InclusionLevel

# Repository paths (globs) outside docs_dir that the site carries.
OUTSIDE = ("bench/README.md", "bench/results/*.png", "bench/results/*.json")


def on_files(files: Files, config: MkDocsConfig) -> Files:
    root = os.path.dirname(os.path.abspath(config.config_file_path))
    for pattern in OUTSIDE:
        found = sorted(glob.glob(os.path.join(root, pattern)))
        if not found:
            raise FileNotFoundError(f"docs/hooks.py: nothing matches {pattern!r}")
        for path in found:
            in_repo = os.path.relpath(path, root).replace(os.sep, "/")
            # Where the file lands in the site, as if it were docs/<in_repo> (README.md -> index).
            placed = File(in_repo, None, config.site_dir, config.use_directory_urls)
            files.append(
                File(
                    os.path.relpath(path, config.docs_dir),  # e.g. ../bench/README.md
                    config.docs_dir,
                    config.site_dir,
                    config.use_directory_urls,
                    dest_uri=placed.dest_uri,
                    # Said outright: MkDocs' default exclusion of dot paths (`.*`) matches `..`.
                    inclusion=InclusionLevel.INCLUDED,
                )
            )
    return files
