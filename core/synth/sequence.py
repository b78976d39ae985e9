"""Frames of one camera over time, for testing what is judged across frames: a desk with one mug
on its coaster, the same mug moved off it, and a hand passing over the mug.

The frames share one seed, so apart from what changes (the mug's place, the hand) they are the
same picture, as from a fixed camera.
"""

from __future__ import annotations

import math
from dataclasses import replace

from PIL import Image, ImageDraw

from core.synth.render import render_scene
from core.synth.scene import Circle, Scene, sample_scene

SKIN = (224, 172, 140)


def desk_scene(first_seed: int, size: int) -> Scene:
    """The first scene from `first_seed` on with exactly one mug, standing on a coaster, no
    laptop or keyboard, and room on the table to move the mug well away from its coaster."""
    for seed in range(first_seed, first_seed + 10_000):
        scene = sample_scene(seed, size)
        if (
            len(scene.mugs) == 1
            and scene.mugs[0].coaster is not None
            and scene.device is None
            and _away_from_coaster(scene) is not None
        ):
            return scene
    raise LookupError(f"no desk scene among 10000 seeds from {first_seed}")


def _away_from_coaster(scene: Scene) -> Circle | None:
    """A place for the mug at least 25 cm from its coaster, 12 cm inside the table's visible
    edges and clear of the other objects."""
    mug = scene.mugs[0]
    t, v = scene.table, scene.view
    x0, y0 = max(t.x0, v.x0) + 12, max(t.y0, v.y0) + 12
    x1, y1 = min(t.x1, v.x1) - 12, min(t.y1, v.y1) - 12
    coaster = scene.coasters[mug.coaster].shape  # type: ignore[index]
    steps = 12
    for i in range(steps + 1):
        for j in range(steps + 1):
            cx, cy = x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * j / steps
            clear = all(
                math.dist((cx, cy), (c.shape.cx, c.shape.cy)) > c.shape.radius + mug.body.radius + 4
                for c in scene.coasters
            ) and all(c.rect.circle_clearance(cx, cy, mug.body.radius) > 4 for c in scene.clutter)
            if clear and math.dist((cx, cy), (coaster.cx, coaster.cy)) >= 25:
                return Circle(cx, cy, mug.body.diameter)
    return None


def moved_off_coaster(scene: Scene) -> Scene:
    """The desk with its mug moved off the coaster to a free place on the table."""
    place = _away_from_coaster(scene)
    assert place is not None, "desk_scene picks scenes with room"
    return replace(scene, mugs=(replace(scene.mugs[0], body=place, coaster=None),))


def hand_over_mug(image: Image.Image, scene: Scene) -> Image.Image:
    """The picture with a hand (palm and fingers, in one skin tone) covering the mug."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    k = scene.px_per_cm
    mug = scene.mugs[0].body
    cx, cy, r = mug.cx * k, mug.cy * k, mug.radius * k
    palm = 1.6 * r
    draw.ellipse((cx - palm, cy - palm * 1.1, cx + palm, cy + palm * 1.1), fill=SKIN)
    width = 0.45 * r
    for n, lean in enumerate((-0.9, -0.3, 0.3, 0.9)):  # fingers, towards the top of the picture
        fx = cx + lean * palm * 0.8
        top = cy - palm * (2.0 - 0.15 * abs(n - 1.5))
        draw.rounded_rectangle((fx - width, top, fx + width, cy), radius=width, fill=SKIN)
    draw.rounded_rectangle(  # the thumb, to one side
        (cx + palm * 0.6, cy - width, cx + palm * 1.7, cy + width), radius=width, fill=SKIN
    )
    return out


def desk_frames(first_seed: int, size: int) -> dict[str, Image.Image]:
    """The three pictures of the desk: `on` (mug on its coaster), `off` (moved off it), `hand`
    (moved off, a hand over it)."""
    desk = desk_scene(first_seed, size)
    moved = moved_off_coaster(desk)
    off = render_scene(moved, size, perspective=0.0)[0]
    return {
        "on": render_scene(desk, size, perspective=0.0)[0],
        "off": off,
        "hand": hand_over_mug(off, moved),
    }
