"""The drop-in: the engines' own API on the sidecar, so a gateway (or an official Elasticsearch
or OpenSearch client) switches to the sidecar by changing only the URL it calls.

Reranked: `_search` (`search`: the route; `search_request` reads a body as the `/search`
request it means, `search_response` renders the outcome in the engine's shape), `_msearch`
(`msearch`). Everything else: sent on to the engine unchanged, or answered from the embedded
engine's read-only subset (`passthrough`, `embedded`). `wire` holds what the clients check on
the wire (media types, the product header, the error shape), `url_params` the search URL
parameters, `targets` which index and API a path names and whether it writes, `forward` the
streaming hand-over to the engine.

`router` holds the reranking routes; `passthrough` is an ASGI app the app installs as its
router's default, so it only sees what no route matched. `prefixed` is the same drop-in alone
under `/_engine` (`prefix`), where no sidecar route shadows an index name.
"""

from fastapi import APIRouter

from sidecar.api.drop_in import msearch, search
from sidecar.api.drop_in.passthrough import passthrough
from sidecar.api.drop_in.prefix import PREFIX, EnginePrefix

router = APIRouter()
router.include_router(search.router)
router.include_router(msearch.router)
prefixed = EnginePrefix(router, passthrough)

__all__ = ["PREFIX", "passthrough", "prefixed", "router"]
