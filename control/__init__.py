"""Operator-facing control: the `mugpos` command line and, later, the worker control plane."""
