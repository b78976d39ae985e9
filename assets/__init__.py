"""Data shipped in the wheel: the bundled detectors, `models/<name>/<version>/` (infra.model_store)."""
