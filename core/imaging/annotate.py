"""The annotated picture: every detection boxed and labelled, mugs coloured by their verdict.

Made to be read at a glance on any picture size: lines and text scale with the picture, labels sit
on a filled background, a legend says what the colours mean, and a failing mug says why beside it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, ImageOps

ROLE_COLOURS = {"coaster": (52, 120, 246), "table": (160, 160, 160), "hazard": (255, 159, 10)}
PASS_COLOUR = (48, 209, 88)
FAIL_COLOUR = (255, 59, 48)
LEGEND_BACKGROUND = (32, 32, 32)
LEGEND = ((PASS_COLOUR, "passes every rule"), (FAIL_COLOUR, "fails a rule"))
# Text size and line width as shares of the picture's shorter side, with floors that stay legible
# (and visible) on a thumbnail: fixed pixel sizes vanish on a 4K frame and swamp a small one.
FONT_SHARE, MIN_FONT_PX = 0.022, 12
LINE_SHARE, MIN_LINE_PX = 0.004, 2
REASON_MAX_CHARS = 40
Box = Sequence[float]
Colour = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True, slots=True)
class Scale:
    """The sizes of everything drawn on one picture, in pixels."""

    font_px: int
    line_px: int
    pad_px: int


def scale_for(size: tuple[int, int]) -> Scale:
    """Sizes for a picture of `size` (width, height), from its shorter side so that a panorama's
    labels are no taller than a square picture's of the same height."""
    short = min(size)
    font_px = max(MIN_FONT_PX, round(short * FONT_SHARE))
    return Scale(
        font_px=font_px,
        line_px=max(MIN_LINE_PX, round(short * LINE_SHARE)),
        pad_px=max(2, font_px // 5),
    )


@lru_cache(maxsize=16)
def font_for(px: int) -> Font:
    """Pillow's built-in font at `px` pixels (its bundled Aileron, no file or download needed);
    a Pillow without FreeType has only the small fixed bitmap font, which still draws text."""
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 (no size) or no FreeType
        return ImageFont.load_default()


def shorten(text: str, limit: int = REASON_MAX_CHARS) -> str:
    """`text` cut to `limit` characters with "…", so a long rule name stays a short caption."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Font, max_px: int) -> str:
    """`text` shortened until it fits `max_px` wide: a caption wider than the picture would be
    cut off at its edge with no sign that anything is missing."""
    while len(text) > 1 and draw.textlength(text, font=font) > max_px:
        text = shorten(text, len(text) - 1)
    return text


def _ink(background: Colour) -> Colour:
    """Black or white text, whichever reads better on `background` (by its luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _label_size(draw: ImageDraw.ImageDraw, text: str, font: Font, scale: Scale) -> tuple[int, int]:
    """Width and height of a label's filled background, padding included."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left + 2 * scale.pad_px, bottom - top + 2 * scale.pad_px


def _label(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    colour: Colour,
    font: Font,
    scale: Scale,
) -> Box:
    """`text` on a filled `colour` background with its top-left corner at `xy`, moved inside the
    picture where it would stick out: a filled background keeps it readable on any scene. Returns
    the area it covers."""
    width, height = _label_size(draw, text, font, scale)
    x = min(max(0.0, xy[0]), max(0, draw.im.size[0] - width))
    y = min(max(0.0, xy[1]), max(0, draw.im.size[1] - height))
    draw.rectangle([x, y, x + width - 1, y + height - 1], fill=colour)
    left, top, _, _ = draw.textbbox((0, 0), text, font=font)
    draw.text((x + scale.pad_px - left, y + scale.pad_px - top), text, fill=_ink(colour), font=font)
    return (x, y, x + width, y + height)


def _above(draw: ImageDraw.ImageDraw, box: Box, text: str, font: Font, scale: Scale) -> float:
    """Where a box's title goes: just above it, or inside its top edge when there is no room."""
    _, height = _label_size(draw, text, font, scale)
    return box[1] - height if box[1] >= height else box[1]


def _below(draw: ImageDraw.ImageDraw, box: Box, text: str, font: Font, scale: Scale) -> float:
    """Where a mug's reason goes: just below it, or inside its bottom edge at the picture's foot."""
    _, height = _label_size(draw, text, font, scale)
    return box[3] if box[3] + height <= draw.im.size[1] else box[3] - height


def _legend_corner(
    size: tuple[int, int], legend: tuple[int, int], boxes: list[Box]
) -> tuple[int, int]:
    """The corner (top-left first) where the legend hides the least of what is drawn (boxes and
    labels): any fixed corner would sometimes cover the very mug the picture is about."""
    (width, height), (w, h) = size, legend
    right, bottom = max(0, width - w), max(0, height - h)
    corners = [(0, 0), (right, 0), (0, bottom), (right, bottom)]

    def covered(corner: tuple[int, int]) -> float:
        x, y = corner
        return sum(
            max(0.0, min(x + w, b[2]) - max(x, b[0])) * max(0.0, min(y + h, b[3]) - max(y, b[1]))
            for b in boxes
        )

    return min(corners, key=covered)  # min keeps the first of equals: top-left when all are free


def _legend(draw: ImageDraw.ImageDraw, font: Font, scale: Scale, boxes: list[Box]) -> None:
    """A dark panel in a corner: a swatch per verdict colour and what it means."""
    swatch, gap = scale.font_px, scale.pad_px
    rows = [(colour, _label_size(draw, text, font, scale)) for colour, text in LEGEND]
    width = swatch + gap + max(w for _, (w, _) in rows) + 2 * gap
    height = sum(h for _, (_, h) in rows) + 2 * gap
    x, y = _legend_corner(draw.im.size, (width, height), boxes)
    draw.rectangle([x, y, x + width - 1, y + height - 1], fill=LEGEND_BACKGROUND)
    top = y + gap
    for (colour, text), (_, (_, row_height)) in zip(LEGEND, rows, strict=True):
        middle = top + (row_height - swatch) // 2
        draw.rectangle([x + gap, middle, x + gap + swatch - 1, middle + swatch - 1], fill=colour)
        _label(draw, (x + gap + swatch, top), text, LEGEND_BACKGROUND, font, scale)
        top += row_height


def annotate(
    original: bytes,
    detections: Iterable[tuple[str, str, float, Box]],
    mugs: Iterable[tuple[Box, bool]],
    *,
    reasons: Mapping[int, str] | None = None,
    quality: int = 85,
) -> bytes:
    """JPEG of `original` with (class, role, confidence, box) detections and (box, passed) mugs;
    `reasons` (by position in `mugs`) is a failing mug's short reason, written below its box."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(original))).convert("RGB")
    draw = ImageDraw.Draw(image)
    scale = scale_for(image.size)
    font = font_for(scale.font_px)
    drawn: list[Box] = []  # boxes and labels, for the legend to keep clear of
    for class_name, role, confidence, box in detections:
        if role == "mug":
            continue
        colour = ROLE_COLOURS.get(role, (200, 200, 200))
        draw.rectangle(list(box), outline=colour, width=scale.line_px)
        text = f"{class_name} {confidence:.2f}"
        at = (box[0], _above(draw, box, text, font, scale))
        drawn += [box, _label(draw, at, text, colour, font, scale)]
    mug_list = list(mugs)
    for index, (box, passed) in enumerate(mug_list):
        colour = PASS_COLOUR if passed else FAIL_COLOUR
        draw.rectangle(list(box), outline=colour, width=scale.line_px + 1)
        text = f"mug {index} {'ok' if passed else 'check'}"  # as verdicts and alerts name it
        at = (box[0], _above(draw, box, text, font, scale))
        drawn += [box, _label(draw, at, text, colour, font, scale)]
        reason = (reasons or {}).get(index)
        if reason and not passed:
            text = _fit(draw, shorten(reason), font, image.width - 2 * scale.pad_px)
            at = (box[0], _below(draw, box, text, font, scale))
            drawn.append(_label(draw, at, text, colour, font, scale))
    if mug_list:
        _legend(draw, font, scale, drawn)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()
