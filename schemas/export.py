"""Write the JSON Schema of every public message to docs/schemas/ (run: python -m schemas.export)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schemas.control import ControlCommand, WorkerStatus
from schemas.messages import PUBLIC_MESSAGES

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "docs" / "schemas"


def render() -> dict[str, str]:
    return {
        f"{name}.v{model.model_fields['schema_version'].default}.schema.json": json.dumps(
            model.model_json_schema(), indent=2
        )
        + "\n"
        for name, model in (
            PUBLIC_MESSAGES | {"control-command": ControlCommand, "worker-status": WorkerStatus}
        ).items()
    }


def main(directory: Path = DEFAULT_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for filename, text in render().items():
        (directory / filename).write_text(text)
        print(directory / filename)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR)
