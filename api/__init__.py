"""FastAPI gateway (arrives with the API issue)."""
