"""Everything that speaks to, or lives in, the search engine: backends, index templates, engines."""
