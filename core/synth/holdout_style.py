"""A second look for generated scenes, used only to evaluate: training never renders it.

The detector is trained on `core.synth.render`'s pictures; a figure measured on those says how
well it learned that renderer, not the objects. This module draws the same scene layouts
(`core.synth.scene`, so the ground truth in centimetres is unchanged) with its own shapes and
textures, written separately from the training renderer: laminate, glass, stone and cloth tables
on tiled floors; cork, felt, slate and wooden coasters with rims; mugs with thick rims, liquid at
different levels, glossy highlights, striped glazes, D-shaped handles and hard shadows from one
light; unlabelled look-alikes that must not be detected (plates, saucers, bowls, lids, stain rings,
phones, paper); a colour cast, vignetting, blur, noise, JPEG compression and a perspective tilt.

Nothing in `core.models.training` or `core.synth.dataset` imports it (tests/unit/test_synth.py
checks), so the figures on it stay a hold-out.
"""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from core.synth.camera import Label, Shot, scene_labels, tilt, warp
from core.synth.scene import HANDLE_DIRECTIONS, Circle, Rect, Scene, shade

_OVERSAMPLE = 3
_TABLE_KINDS = ("laminate", "glass", "stone", "cloth")
_COASTER_KINDS = ("cork", "felt", "slate", "wood")
_LIQUIDS = ((72, 44, 28), (150, 100, 60), (232, 226, 210), (186, 214, 226), None)  # None: empty


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return tuple(int(a[i] + (b[i] - a[i]) * t) for i in range(3))  # type: ignore[return-value]


class _Painter:
    """Draws in centimetres on an oversampled canvas."""

    def __init__(self, scene: Scene, size: int, rng: random.Random) -> None:
        self.k = scene.px_per_cm * _OVERSAMPLE
        self.rng = rng
        self.canvas = Image.new("RGB", (size * _OVERSAMPLE, size * _OVERSAMPLE))
        self.draw = ImageDraw.Draw(self.canvas)

    def rect(self, r: Rect) -> tuple[float, float, float, float]:
        return (r.x0 * self.k, r.y0 * self.k, r.x1 * self.k, r.y1 * self.k)

    def disc(self, cx: float, cy: float, radius: float) -> tuple[float, float, float, float]:
        k = self.k
        return ((cx - radius) * k, (cy - radius) * k, (cx + radius) * k, (cy + radius) * k)

    def speckle(self, area: Rect, colour: tuple[int, int, int], count: int, size_cm: float) -> None:
        for _ in range(count):
            x = self.rng.uniform(area.x0, area.x1)
            y = self.rng.uniform(area.y0, area.y1)
            s = self.rng.uniform(0.3, 1.0) * size_cm
            self.draw.ellipse(self.disc(x, y, s), fill=shade(colour, self.rng.uniform(0.6, 1.3)))


def _floor(p: _Painter, scene: Scene) -> None:
    tile = p.rng.uniform(15, 40)
    a = (p.rng.randint(150, 230),) * 3
    b = shade(a, p.rng.uniform(0.8, 0.95))
    view = scene.view
    y = view.y0 - tile
    row = 0
    while y < view.y1 + tile:
        x = view.x0 - tile
        column = 0
        while x < view.x1 + tile:
            p.draw.rectangle(
                p.rect(Rect(x, y, x + tile, y + tile)), fill=a if (row + column) % 2 else b
            )
            x += tile
            column += 1
        y += tile
        row += 1


def _table(p: _Painter, scene: Scene) -> None:
    table, rng = scene.table, p.rng
    kind = rng.choice(_TABLE_KINDS)
    base = {
        "laminate": (rng.randint(200, 245), rng.randint(195, 240), rng.randint(185, 230)),
        "glass": (rng.randint(150, 185), rng.randint(180, 205), rng.randint(190, 215)),
        "stone": (rng.randint(60, 110),) * 3,
        "cloth": (rng.randint(120, 220), rng.randint(40, 120), rng.randint(40, 120)),
    }[kind]
    # A lip of another tone all round: what makes a table's edge an edge from above.
    p.draw.rectangle(p.rect(table), fill=shade(base, rng.choice((0.55, 1.25))))
    top = Rect(table.x0 + 1.0, table.y0 + 1.0, table.x1 - 1.0, table.y1 - 1.0)
    p.draw.rectangle(p.rect(top), fill=base)
    if kind == "glass":
        for _ in range(rng.randint(2, 5)):  # reflections: pale diagonal streaks
            x = rng.uniform(top.x0, top.x1)
            width = rng.uniform(1, 4) * p.k
            p.draw.line(
                [(x * p.k, top.y0 * p.k), ((x + 25) * p.k, top.y1 * p.k)],
                fill=_mix(base, (255, 255, 255), 0.35),
                width=int(width),
            )
    elif kind == "stone":
        p.speckle(top, (200, 200, 200), int(top.width * top.height / 6), 0.25)
    elif kind == "cloth":  # gingham
        step = rng.uniform(3, 6)
        light = _mix(base, (255, 255, 255), 0.6)
        x = top.x0
        while x < top.x1:
            p.draw.rectangle(p.rect(Rect(x, top.y0, min(x + step / 2, top.x1), top.y1)), fill=light)
            x += step
        y = top.y0
        while y < top.y1:
            p.draw.rectangle(p.rect(Rect(top.x0, y, top.x1, min(y + step / 2, top.y1))), fill=light)
            y += step


def _free_spot(
    rng: random.Random, area: Rect, radius: float, taken: list[tuple[float, float, float]]
) -> tuple[float, float] | None:
    for _ in range(30):
        x = rng.uniform(area.x0 + radius, area.x1 - radius)
        y = rng.uniform(area.y0 + radius, area.y1 - radius)
        if all(math.hypot(x - tx, y - ty) > radius + tr + 2 for tx, ty, tr in taken):
            return x, y
    return None


def _look_alikes(p: _Painter, scene: Scene) -> None:
    """Unlabelled things a detector must not take for mugs, coasters or devices."""
    rng, table = p.rng, scene.table
    if table.width < 30 or table.height < 30:
        return
    taken = [(m.body.cx, m.body.cy, m.body.radius + 3) for m in scene.mugs]
    taken += [(c.shape.cx, c.shape.cy, c.shape.radius) for c in scene.coasters]
    if scene.device is not None:
        d = scene.device.rect
        taken.append(((d.x0 + d.x1) / 2, (d.y0 + d.y1) / 2, math.hypot(d.width, d.height) / 2))
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(("plate", "saucer", "bowl", "lid", "stain", "phone", "paper"))
        radius = {"plate": 12, "saucer": 7, "bowl": 8, "lid": 4, "stain": 4.5}.get(kind, 8)
        spot = _free_spot(rng, table, radius, taken)
        if spot is None:
            continue
        x, y = spot
        taken.append((x, y, radius))
        white = (rng.randint(225, 250),) * 3
        if kind in ("plate", "saucer"):
            p.draw.ellipse(p.disc(x, y, radius), fill=white, outline=shade(white, 0.8), width=3)
            p.draw.ellipse(p.disc(x, y, radius * 0.62), outline=shade(white, 0.85), width=4)
        elif kind == "bowl":
            colour = (rng.randint(60, 220), rng.randint(60, 220), rng.randint(60, 220))
            p.draw.ellipse(p.disc(x, y, radius), fill=colour)
            p.draw.ellipse(p.disc(x, y, radius * 0.85), fill=shade(colour, 0.7))
        elif kind == "lid":
            p.draw.ellipse(p.disc(x, y, radius), fill=(30, 30, 30), outline=(90, 90, 90), width=3)
        elif kind == "stain":  # the ring a wet mug leaves
            p.draw.ellipse(p.disc(x, y, radius), outline=(130, 90, 60), width=int(0.4 * p.k))
        elif kind == "phone":
            p.draw.rounded_rectangle(
                p.rect(Rect(x - 3.6, y - 7.4, x + 3.6, y + 7.4)), radius=p.k, fill=(20, 20, 25)
            )
        else:
            p.draw.rectangle(p.rect(Rect(x - 10.5, y - 7.4, x + 10.5, y + 7.4)), fill=white)


def _device(p: _Painter, scene: Scene) -> None:
    if scene.device is None:
        return
    r, rng = scene.device.rect, p.rng
    shell = (rng.randint(150, 210),) * 3 if rng.random() < 0.5 else (rng.randint(25, 45),) * 3
    p.draw.rectangle(p.rect(r), fill=shell)
    keys = Rect(r.x0 + 1.0, r.y0 + 1.0, r.x1 - 1.0, r.y1 - 1.0)
    if scene.device.kind == "laptop":
        if r.width >= r.height:
            screen = Rect(r.x0 + 1.0, r.y0 + 1.0, r.x1 - 1.0, r.y0 + r.height * 0.48)
            keys = Rect(r.x0 + 2.0, screen.y1 + 1.5, r.x1 - 2.0, r.y1 - 4.0)
        else:
            screen = Rect(r.x0 + 1.0, r.y0 + 1.0, r.x0 + r.width * 0.48, r.y1 - 1.0)
            keys = Rect(screen.x1 + 1.5, r.y0 + 2.0, r.x1 - 4.0, r.y1 - 2.0)
        p.draw.rectangle(p.rect(screen), fill=(rng.randint(5, 30), rng.randint(5, 30), 40))
    key = shade(shell, 0.75 if shell[0] > 100 else 2.2)
    pitch = rng.uniform(1.7, 2.1)
    y = keys.y0
    while y + pitch <= keys.y1:
        x = keys.x0
        while x + pitch <= keys.x1:
            p.draw.rounded_rectangle(
                p.rect(Rect(x + 0.15, y + 0.15, x + pitch - 0.15, y + pitch - 0.15)),
                radius=0.2 * p.k,
                fill=key,
            )
            x += pitch
        y += pitch


def _coasters(p: _Painter, scene: Scene) -> None:
    rng = p.rng
    kind = rng.choice(_COASTER_KINDS)
    for coaster in scene.coasters:
        c = coaster.shape
        base = {
            "cork": (rng.randint(170, 200), rng.randint(125, 150), rng.randint(80, 100)),
            "felt": shade(coaster.colour, 0.8),
            "slate": (rng.randint(45, 70),) * 3,
            "wood": (rng.randint(140, 175), rng.randint(95, 120), rng.randint(55, 75)),
        }[kind]
        rim = shade(base, 1.3 if kind == "slate" else 0.7)
        shape = p.disc(c.cx, c.cy, c.radius)
        inner = p.disc(c.cx, c.cy, c.radius - 0.5)
        if coaster.square:
            p.draw.rectangle(shape, fill=rim)
            p.draw.rectangle(inner, fill=base)
        else:
            p.draw.ellipse(shape, fill=rim)
            p.draw.ellipse(inner, fill=base)
        area = Rect(
            c.cx - c.radius * 0.6,
            c.cy - c.radius * 0.6,
            c.cx + c.radius * 0.6,
            c.cy + c.radius * 0.6,
        )
        if kind == "cork":
            p.speckle(area, shade(base, 0.7), 40, 0.15)
        elif kind == "wood":
            for ring in range(1, 4):
                p.draw.ellipse(p.disc(c.cx, c.cy, c.radius * ring / 4.5), outline=rim, width=2)


def _mugs(p: _Painter, scene: Scene) -> None:
    rng = p.rng
    light = rng.uniform(0, 2 * math.pi)
    reach = rng.uniform(0.8, 2.0)  # a low light throws long, hard shadows
    shadow = _mix((0, 0, 0), (90, 90, 90), rng.random())
    for mug in scene.mugs:  # shadows first: no mug's shadow falls on another mug
        b = mug.body
        p.draw.ellipse(
            p.disc(b.cx + reach * math.cos(light), b.cy + reach * math.sin(light), b.radius),
            fill=shadow,
        )
    for mug in scene.mugs:
        b = mug.body
        angle = math.radians(HANDLE_DIRECTIONS[mug.handle_direction])
        # A D-shaped handle: a thick rounded bar standing off the body.
        out = b.radius + 1.4
        hx, hy = b.cx + out * math.cos(angle), b.cy + out * math.sin(angle)
        along = (math.cos(angle + math.pi / 2), math.sin(angle + math.pi / 2))
        ends = [(hx + along[0] * 1.8 * s, hy + along[1] * 1.8 * s) for s in (-1, 1)]
        glaze = shade(mug.colour, 0.9)
        for end in ends:
            p.draw.line(
                [
                    (end[0] * p.k, end[1] * p.k),
                    ((end[0] + b.cx) / 2 * p.k, (end[1] + b.cy) / 2 * p.k),
                ],
                fill=glaze,
                width=int(0.8 * p.k),
            )
        p.draw.line([(e[0] * p.k, e[1] * p.k) for e in ends], fill=glaze, width=int(0.9 * p.k))
        rim = rng.uniform(0.5, 0.9)
        p.draw.ellipse(p.disc(b.cx, b.cy, b.radius), fill=shade(mug.colour, 1.15))
        if rng.random() < 0.4:  # a striped glaze on the rim
            for step in range(12):
                a = step * math.pi / 6
                x, y = (
                    b.cx + (b.radius - rim / 2) * math.cos(a),
                    b.cy + (b.radius - rim / 2) * math.sin(a),
                )
                p.draw.ellipse(p.disc(x, y, rim / 3), fill=shade(mug.colour, 0.6))
        inside = Circle(b.cx, b.cy, b.diameter - 2 * rim)
        p.draw.ellipse(p.disc(inside.cx, inside.cy, inside.radius), fill=shade(mug.colour, 0.55))
        liquid = rng.choice(_LIQUIDS)
        if liquid is not None:
            level = rng.uniform(0.7, 0.97)
            p.draw.ellipse(p.disc(inside.cx, inside.cy, inside.radius * level), fill=liquid)
        glint = (b.cx - b.radius * 0.45 * math.cos(light), b.cy - b.radius * 0.45 * math.sin(light))
        p.draw.ellipse(p.disc(*glint, b.radius * 0.15), fill=(250, 250, 250))


def render_holdout(
    scene: Scene, size: int, perspective: float = 0.02
) -> tuple[Image.Image, list[Label]]:
    """The scene in the hold-out look, and labels of what was drawn (same classes and box
    conventions as the training renderer: a mug's box is its body)."""
    shot = holdout_shot(scene, size, perspective)
    return shot.image, shot.labels


def holdout_shot(scene: Scene, size: int, perspective: float = 0.02) -> Shot:
    """`render_holdout`, with the camera that took the picture (for calibrating on the table)."""
    rng = random.Random(scene.seed * 104_729 + size * 31 + 7)
    p = _Painter(scene, size, rng)
    _floor(p, scene)
    _table(p, scene)
    _look_alikes(p, scene)
    _device(p, scene)
    _coasters(p, scene)
    _mugs(p, scene)
    image = p.canvas.resize((size, size), Image.Resampling.BOX)

    array = np.asarray(image, dtype=np.float32)
    cast = np.array([rng.uniform(0.85, 1.15) for _ in range(3)], dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    vignette = 1.0 - rng.uniform(0.0, 0.6) * (xx**2 + yy**2)
    array = array * cast[None, None, :] * vignette[:, :, None]
    array += np.random.default_rng(scene.seed + 17).normal(0, rng.uniform(0, 6), array.shape)
    image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))

    forward = tilt(size, perspective, rng)
    image = warp(image, forward, Image.Resampling.BICUBIC, (128, 128, 128))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=rng.randint(45, 92))
    image = Image.open(buffer).convert("RGB")

    return Shot(image, scene_labels(scene, forward, size), forward)
