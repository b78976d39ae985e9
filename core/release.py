"""Which release is running: the installed distribution's version, for what the system reports
about itself (trace resources, backup manifests)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def installed_version() -> str:
    """The installed `mugpos` version; "unknown" when running from an uninstalled tree."""
    try:
        return version("mugpos")
    except PackageNotFoundError:
        return "unknown"
