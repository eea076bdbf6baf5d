"""The web API (FastAPI)."""
