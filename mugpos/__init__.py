"""The mugpos Python SDK: `from mugpos.client import Client` (see mugpos.client)."""
