"""More looks per class for training (`render_scene(..., varied=True)`, `mugpos train --varied`).

A detector trained on one look of mug learns that look: on scenes drawn differently it reported a
second, coaster box on mugs themselves and took saucers for coasters. These additions draw, from
their own random stream (so the default look stays pixel-for-pixel what the shipped models were
trained on): tiled or checked floors, table surfaces other than wood (patterned ones among them),
coaster materials, mug handles, rims, liquids, glazes and highlights, hard or soft shadows near
or far from the mug, saucers under mugs that stand on no coaster and other look-alikes on free
table space (plates, bowls, lids, stain rings, phones; none of them labelled), a colour cast,
JPEG artefacts and a lens that bows straight lines (the geometry is core.synth.camera's, as it
moves the labels too). Coasters of every common size are a matter of layout, not of drawing:
`scene.VARIED_COASTER_CM`, which varied datasets lay out with.
"""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image, ImageDraw

from core.synth.scene import Mug, Rect, Scene, shade

Draw = ImageDraw.ImageDraw
_SURFACES = ("wood", "laminate", "glass", "cloth", "pattern")
_MATERIALS = ("plain", "cork", "felt", "stone", "wood")
# The largest radial distortion drawn (camera.distort, k1 in half picture widths): a picture's
# edge bows by up to about 2-3 % of the picture, what a wide phone or webcam lens shows.
LENS_DISTORTION = 0.05
_DRINKS = ((60, 35, 20), (120, 80, 45), (225, 215, 195), (170, 200, 215), (95, 20, 30))


def _oval(cx: float, cy: float, r: float, k: float) -> tuple[float, float, float, float]:
    return ((cx - r) * k, (cy - r) * k, (cx + r) * k, (cy + r) * k)


def floor_pattern(
    draw: Draw, regions: list[Rect], colour: tuple[int, int, int], k: float, rng: random.Random
) -> None:
    """Tiles or checks on the floor around the table (one draw in three leaves it plain): edges
    and corners that are not the table's."""
    kind = rng.choice(("plain", "tiles", "checks"))
    if kind == "plain":
        return
    pitch, other = rng.uniform(8.0, 30.0), shade(colour, rng.choice((0.8, 0.9, 1.1, 1.25)))
    for region in regions:
        x = region.x0 - region.x0 % pitch
        while x < region.x1:
            y = region.y0 - region.y0 % pitch
            while y < region.y1:
                cell = Rect(
                    max(x, region.x0),
                    max(y, region.y0),
                    min(x + pitch, region.x1),
                    min(y + pitch, region.y1),
                )
                checked = kind == "checks" and (round(x / pitch) + round(y / pitch)) % 2
                draw.rectangle(
                    (cell.x0 * k, cell.y0 * k, cell.x1 * k, cell.y1 * k),
                    fill=other if checked else None,
                    outline=shade(colour, 0.7) if kind == "tiles" else None,
                    width=max(1, int(0.3 * k)),
                )
                y += pitch
            x += pitch


def table_surface(
    draw: Draw, top: Rect, colour: tuple[int, int, int], k: float, rng: random.Random
) -> None:
    """Cover the wood grain with another surface, or leave it (one draw in five)."""
    surface = rng.choice(_SURFACES)
    box = (top.x0 * k, top.y0 * k, top.x1 * k, top.y1 * k)
    if surface == "laminate":
        draw.rectangle(box, fill=shade(colour, rng.uniform(1.1, 1.4)))
    elif surface == "glass":
        tint = (rng.randint(140, 190), rng.randint(175, 210), rng.randint(185, 220))
        draw.rectangle(box, fill=tint)
        for _ in range(rng.randint(1, 4)):
            x = rng.uniform(top.x0, top.x1)
            draw.line(
                [(x * k, top.y0 * k), ((x + rng.uniform(-20, 20)) * k, top.y1 * k)],
                fill=shade(tint, 1.15),
                width=int(rng.uniform(1, 3) * k),
            )
    elif surface == "cloth":
        draw.rectangle(box, fill=colour)
        stripe, pitch = shade(colour, rng.uniform(0.6, 0.85)), rng.uniform(2.0, 5.0)
        x = top.x0
        while x < top.x1:
            draw.rectangle(
                (x * k, top.y0 * k, min(x + pitch / 3, top.x1) * k, top.y1 * k), fill=stripe
            )
            x += pitch
    elif surface == "pattern":  # a printed cloth or laminate: dots or small squares in rows
        draw.rectangle(box, fill=colour)
        mark, pitch = shade(colour, rng.uniform(0.55, 1.35)), rng.uniform(2.0, 4.5)
        size, round_marks = pitch * rng.uniform(0.25, 0.5), rng.random() < 0.5
        y = top.y0 + pitch / 2
        while y < top.y1:
            x = top.x0 + pitch / 2
            while x < top.x1:
                cell = (x * k, y * k, (x + size) * k, (y + size) * k)
                (draw.ellipse if round_marks else draw.rectangle)(cell, fill=mark)
                x += pitch
            y += pitch


def coaster_material(
    draw: Draw,
    cx: float,
    cy: float,
    r: float,
    colour: tuple[int, int, int],
    k: float,
    rng: random.Random,
) -> None:
    """Texture inside a drawn coaster (its outline stays)."""
    material = rng.choice(_MATERIALS)
    inner = r * 0.8
    if material == "cork":
        for _ in range(30):
            a, d = rng.uniform(0, 2 * math.pi), rng.uniform(0, inner)
            draw.ellipse(
                _oval(cx + d * math.cos(a), cy + d * math.sin(a), 0.12, k), fill=shade(colour, 0.6)
            )
    elif material == "felt":
        draw.ellipse(_oval(cx, cy, inner, k), fill=shade(colour, 0.9))
    elif material == "stone":
        for _ in range(4):
            a = rng.uniform(0, math.pi)
            dx, dy = inner * math.cos(a), inner * math.sin(a)
            draw.line(
                [((cx - dx) * k, (cy - dy) * k), ((cx + dx) * k, (cy + dy) * k)],
                fill=shade(colour, 1.3),
                width=2,
            )
    elif material == "wood":
        for ring in (0.3, 0.55, 0.8):
            draw.ellipse(_oval(cx, cy, r * ring, k), outline=shade(colour, 0.75), width=2)


def saucer(draw: Draw, mug: Mug, k: float, rng: random.Random) -> None:
    """A saucer under a mug that stands on no coaster: round, larger than the mug, not a coaster."""
    b = mug.body
    r = b.radius + rng.uniform(2.0, 3.5)
    white = (rng.randint(215, 250),) * 3
    draw.ellipse(_oval(b.cx, b.cy, r, k), fill=white, outline=shade(white, 0.8), width=3)
    draw.ellipse(_oval(b.cx, b.cy, b.radius + 0.6, k), outline=shade(white, 0.85), width=3)


def look_alikes(draw: Draw, scene: Scene, k: float, rng: random.Random) -> None:
    """Plates, bowls, lids, stain rings and phones on free table space, where no object stands."""
    table = scene.table
    taken = [(m.body.cx, m.body.cy, m.body.radius + 4) for m in scene.mugs]
    taken += [(c.shape.cx, c.shape.cy, c.shape.radius + 1) for c in scene.coasters]
    if scene.device is not None:
        d = scene.device.rect
        taken.append(((d.x0 + d.x1) / 2, (d.y0 + d.y1) / 2, math.hypot(d.width, d.height) / 2 + 1))
    for _ in range(rng.randint(0, 3)):
        kind = rng.choice(("plate", "bowl", "lid", "ring", "phone"))
        r = {
            "plate": rng.uniform(10, 13),
            "bowl": rng.uniform(6, 9),
            "lid": rng.uniform(3.5, 5),
            "phone": 8.0,
        }.get(kind, rng.uniform(3.5, 5.5))
        if table.width < 2 * r + 2 or table.height < 2 * r + 2:
            continue
        x, y = rng.uniform(table.x0 + r, table.x1 - r), rng.uniform(table.y0 + r, table.y1 - r)
        if any(math.hypot(x - tx, y - ty) < r + tr for tx, ty, tr in taken):
            continue
        taken.append((x, y, r))
        if kind == "plate":
            white = (rng.randint(220, 250),) * 3
            draw.ellipse(_oval(x, y, r, k), fill=white, outline=shade(white, 0.85), width=3)
            draw.ellipse(_oval(x, y, r * 0.65, k), outline=shade(white, 0.9), width=3)
        elif kind == "bowl":
            colour = (rng.randint(50, 230), rng.randint(50, 230), rng.randint(50, 230))
            draw.ellipse(_oval(x, y, r, k), fill=colour)
            draw.ellipse(_oval(x, y, r * 0.8, k), fill=shade(colour, 0.75))
        elif kind == "lid":
            draw.ellipse(_oval(x, y, r, k), fill=(rng.randint(15, 60),) * 3)
        elif kind == "phone":  # 7 x 15 cm, either way round, a dark screen in a frame
            w, h = (3.5, 7.5) if rng.random() < 0.5 else (7.5, 3.5)
            frame = (rng.randint(10, 200),) * 3
            draw.rounded_rectangle(
                ((x - w) * k, (y - h) * k, (x + w) * k, (y + h) * k), radius=0.8 * k, fill=frame
            )
            draw.rectangle(
                ((x - w + 0.4) * k, (y - h + 0.4) * k, (x + w - 0.4) * k, (y + h - 0.4) * k),
                fill=(rng.randint(5, 40),) * 3,
            )
        else:  # a ring left by a cup: coffee, tea or wine
            stain = rng.choice(((120, 85, 55), (150, 110, 70), (110, 40, 50)))
            width = max(2, int(rng.uniform(0.15, 0.45) * k))
            draw.ellipse(_oval(x, y, r, k), outline=stain, width=width)


def handle(draw: Draw, mug: Mug, angle: float, k: float, rng: random.Random) -> None:
    """A handle of another shape and size (the mug's box stays its body): a ring, a D-shaped arc
    or a straight grip."""
    b, colour = mug.body, shade(mug.colour, rng.uniform(0.7, 1.0))
    kind = rng.choice(("ring", "d", "grip"))
    out = rng.uniform(1.6, 3.2) if kind != "grip" else rng.uniform(1.5, 2.8)  # cm beyond the body
    ux, uy = math.cos(angle), math.sin(angle)
    if kind == "ring":
        r = out / 2 + 0.3
        cx, cy = b.cx + (b.radius + r - 0.3) * ux, b.cy + (b.radius + r - 0.3) * uy
        draw.ellipse(
            _oval(cx, cy, r, k), outline=colour, width=max(2, int(rng.uniform(0.4, 1.0) * k))
        )
    elif kind == "d":  # an arc standing on the body, its flat side against it
        cx, cy = b.cx + b.radius * ux, b.cy + b.radius * uy
        start = math.degrees(angle) - 90
        width = max(2, int(rng.uniform(0.4, 1.0) * k))
        draw.arc(_oval(cx, cy, out, k), start, start + 180, fill=colour, width=width)
    else:
        width = rng.uniform(0.8, 1.6)
        x0, y0 = b.cx + (b.radius - 0.2) * ux, b.cy + (b.radius - 0.2) * uy
        x1, y1 = b.cx + (b.radius + out) * ux, b.cy + (b.radius + out) * uy
        draw.line([(x0 * k, y0 * k), (x1 * k, y1 * k)], fill=colour, width=int(width * k))


def mug_details(draw: Draw, mug: Mug, k: float, rng: random.Random) -> None:
    """Over a drawn mug: a rim of another width, a drink at some level (or none), a glaze
    pattern and a highlight."""
    b = mug.body
    rim = rng.uniform(0.3, 1.1)
    draw.ellipse(_oval(b.cx, b.cy, b.radius, k), fill=shade(mug.colour, rng.uniform(0.9, 1.2)))
    inside = b.radius - rim
    draw.ellipse(_oval(b.cx, b.cy, inside, k), fill=shade(mug.colour, 0.5))
    if rng.random() < 0.8:
        draw.ellipse(
            _oval(b.cx, b.cy, inside * rng.uniform(0.6, 0.98), k), fill=rng.choice(_DRINKS)
        )
    if rng.random() < 0.3:
        for step in range(8):
            a = step * math.pi / 4
            x, y = (
                b.cx + (b.radius - rim / 2) * math.cos(a),
                b.cy + (b.radius - rim / 2) * math.sin(a),
            )
            draw.ellipse(_oval(x, y, max(rim / 3, 0.1), k), fill=shade(mug.colour, 0.55))
    if rng.random() < 0.6:
        a = rng.uniform(0, 2 * math.pi)
        draw.ellipse(
            _oval(
                b.cx + b.radius * 0.5 * math.cos(a),
                b.cy + b.radius * 0.5 * math.sin(a),
                b.radius * 0.12,
                k,
            ),
            fill=(245, 245, 245),
        )


def camera(image: Image.Image, rng: random.Random) -> Image.Image:
    """A colour cast and, one picture in two, JPEG compression."""
    cast = np.array([rng.uniform(0.85, 1.15) for _ in range(3)], dtype=np.float32)
    array = np.clip(np.asarray(image, dtype=np.float32) * cast, 0, 255).astype(np.uint8)
    image = Image.fromarray(array)
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=rng.randint(35, 90))
        image = Image.open(buffer).convert("RGB")
    return image
