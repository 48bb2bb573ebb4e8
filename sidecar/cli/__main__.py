"""`python -m sidecar.cli ...` runs the `rerank-sidecar` command."""

import sys

from sidecar.cli import main

sys.exit(main())
