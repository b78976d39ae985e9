"""Sources: the cameras (or other feeds) images come from, each with its calibration, zones, rules
and model, and what the pipeline makes of their settings."""

from core.sources.setup import SourceSetup, SourceSetupError, default_setup, source_setup
from core.sources.spec import SourceSpec

__all__ = ["SourceSetup", "SourceSetupError", "SourceSpec", "default_setup", "source_setup"]
