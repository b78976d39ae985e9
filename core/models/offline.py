"""Make ultralytics work with no network: no hub, no auto-install, no font download.

Must run before `ultralytics` is imported, since it reads its settings directory at import time.
Training and validation fetch Arial.ttf even when offline; a font shipped with matplotlib (an
ultralytics dependency) is copied under that name instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}
_done = False


def prepare_offline(config_dir: Path | None = None) -> None:
    """Set the offline environment and settings once per process."""
    global _done
    if _done:
        return
    for name, value in _OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
    if "YOLO_CONFIG_DIR" not in os.environ:
        directory = config_dir or Path(tempfile.gettempdir()) / "mugpos-ultralytics"
        directory.mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_CONFIG_DIR"] = str(directory)
    fonts = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics"
    fonts.mkdir(parents=True, exist_ok=True)
    import matplotlib

    source = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (fonts / name).exists():
            shutil.copyfile(source, fonts / name)
    from ultralytics import settings

    settings.update({"sync": False})
    _done = True
