"""The web dashboard: server-rendered pages over the services, served by the API process."""
