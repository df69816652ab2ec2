"""The REST API (FastAPI, under /v1): a thin face over the services."""
