"""The web upload page and the versioned JSON API (FastAPI), on top of the ensemble."""
