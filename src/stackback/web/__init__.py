"""The web dashboard: server-rendered pages over the services, served by the API process.

``make_router(...)`` (in :mod:`stackback.web.router`) builds the pages as a FastAPI router.
"""
