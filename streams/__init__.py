"""Faust application and topic wiring (arrives with the stream pipeline)."""
