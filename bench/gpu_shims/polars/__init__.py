"""Stand-in for polars on the GPU machine (its 54 MB wheel does not fit the transfer limit).

ultralytics only reads results.csv with it when saving a checkpoint, inside a try block that
falls back to no training history; anything else that reaches for polars fails loudly.
"""

from typing import NoReturn


def read_csv(*_args: object, **_kwargs: object) -> NoReturn:
    raise RuntimeError("polars is not installed on this machine")


def __getattr__(name: str) -> NoReturn:
    raise RuntimeError(f"polars is not installed on this machine (polars.{name})")
