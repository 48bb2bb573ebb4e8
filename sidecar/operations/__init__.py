"""Operator work over the running parts: rules preview and cache warm-up. Commands and admin
routes call these; they call the pipeline, never a route."""
