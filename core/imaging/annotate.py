"""The annotated picture: every detection boxed and labelled, mugs coloured by their verdict."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

from PIL import Image, ImageDraw, ImageOps

ROLE_COLOURS = {"coaster": (52, 120, 246), "table": (160, 160, 160), "hazard": (255, 159, 10)}
PASS_COLOUR = (48, 209, 88)
FAIL_COLOUR = (255, 59, 48)
Box = Sequence[float]


def annotate(
    original: bytes,
    detections: Iterable[tuple[str, str, float, Box]],
    mugs: Iterable[tuple[Box, bool]],
    *,
    quality: int = 85,
) -> bytes:
    """JPEG of `original` with (class, role, confidence, box) detections and (box, passed) mugs."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(original))).convert("RGB")
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 320))
    for class_name, role, confidence, box in detections:
        if role == "mug":
            continue
        colour = ROLE_COLOURS.get(role, (200, 200, 200))
        draw.rectangle(list(box), outline=colour, width=width)
        draw.text((box[0] + 3, box[1] + 2), f"{class_name} {confidence:.2f}", fill=colour)
    for index, (box, passed) in enumerate(mugs):
        colour = PASS_COLOUR if passed else FAIL_COLOUR
        draw.rectangle(list(box), outline=colour, width=width + 1)
        label = f"mug {index} {'ok' if passed else 'check'}"
        draw.text((box[0] + 3, max(0, box[1] - 12)), label, fill=colour)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()
