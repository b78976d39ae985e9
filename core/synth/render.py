"""Draw a `Scene` as a photo-like top-down image, with YOLO labels that match what was drawn.

Domain randomisation: table colour and wood grain, floor, lighting gradient, soft shadows, sensor
noise, blur and a slight perspective tilt (`varied`: and a lens's radial distortion). Drawing
happens at twice the size and is downsampled, so edges are anti-aliased. Mug labels box the mug
body (the rim circle), not the handle, so a mug box's width is the mug's diameter.
"""

from __future__ import annotations

import math
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from core.synth import variety
from core.synth.camera import Label, Shot, distort, scene_labels, tilt, warp
from core.synth.scene import HANDLE_DIRECTIONS, Circle, Rect, Scene, shade

_SS = 2  # supersampling factor


def _contrasting_floor(scene: Scene) -> tuple[int, int, int]:
    """The floor colour, darkened if it is too close to the table to show the table's edges."""
    if sum(abs(a - b) for a, b in zip(scene.floor_colour, scene.table_colour, strict=True)) < 120:
        return shade(scene.table_colour, 0.35)
    return scene.floor_colour


def render_scene(
    scene: Scene, size: int, perspective: float = 0.015, *, varied: bool = False
) -> tuple[Image.Image, list[Label]]:
    """The scene as an RGB image and its labels; `perspective` is the largest corner shift as a
    share of the image size (0 = a camera exactly overhead). `varied` adds the looks of
    core.synth.variety, from a random stream of their own: without it a seed draws exactly the
    picture the shipped detectors were trained on."""
    shot = render_shot(scene, size, perspective, varied=varied)
    return shot.image, shot.labels


def render_shot(
    scene: Scene, size: int, perspective: float = 0.015, *, varied: bool = False
) -> Shot:
    """`render_scene`, with the camera that took the picture (for calibrating on the table)."""
    rng = random.Random(scene.seed * 7919 + size)
    vary = random.Random(scene.seed * 6151 + size + 1) if varied else None
    k = scene.px_per_cm * _SS  # cm -> supersampled px
    canvas = Image.new("RGB", (size * _SS, size * _SS), _contrasting_floor(scene))
    draw = ImageDraw.Draw(canvas)

    def box(rect: Rect) -> tuple[float, float, float, float]:
        return (rect.x0 * k, rect.y0 * k, rect.x1 * k, rect.y1 * k)

    def disc(circle: Circle, grow_cm: float = 0.0) -> tuple[float, float, float, float]:
        r = circle.radius + grow_cm
        return ((circle.cx - r) * k, (circle.cy - r) * k, (circle.cx + r) * k, (circle.cy + r) * k)

    # Table with wood grain and a darker rim so its edges read as edges.
    table = scene.table
    draw.rectangle(box(table), fill=shade(scene.table_colour, 0.7))
    inset = Rect(table.x0 + 0.6, table.y0 + 0.6, table.x1 - 0.6, table.y1 - 0.6)
    draw.rectangle(box(inset), fill=scene.table_colour)
    vertical = rng.random() < 0.5
    for _ in range(rng.randint(10, 40)):
        tone = shade(scene.table_colour, rng.uniform(0.85, 1.12))
        at = rng.uniform(0, scene.view.width)
        width = rng.uniform(0.2, 1.2) * k
        if vertical:
            draw.line([(at * k, inset.y0 * k), (at * k, inset.y1 * k)], fill=tone, width=int(width))
        else:
            draw.line([(inset.x0 * k, at * k), (inset.x1 * k, at * k)], fill=tone, width=int(width))
    if vary is not None:
        variety.table_surface(draw, inset, scene.table_colour, k, vary)
    floor = [
        Rect(-50, -50, table.x0, scene.view.y1 + 50),
        Rect(table.x1, -50, scene.view.x1 + 50, scene.view.y1 + 50),
        Rect(-50, -50, scene.view.x1 + 50, table.y0),
        Rect(-50, table.y1, scene.view.x1 + 50, scene.view.y1 + 50),
    ]
    for edge in floor:
        draw.rectangle(box(edge), fill=_contrasting_floor(scene))
    if vary is not None:
        variety.floor_pattern(draw, floor, _contrasting_floor(scene), k, vary)

    for item in scene.clutter:
        draw.rectangle(box(item.rect), fill=item.colour)
        if item.kind == "paper":
            for line in range(3, int(item.rect.height) - 2, 2):
                y = (item.rect.y0 + line) * k
                draw.line(
                    [((item.rect.x0 + 2) * k, y), ((item.rect.x1 - 2) * k, y)],
                    fill=shade(item.colour, 0.75),
                    width=_SS,
                )

    if vary is not None:  # round things that are not coasters, none of them labelled
        variety.look_alikes(draw, scene, k, vary)
        for mug in scene.mugs:
            if mug.coaster is None and vary.random() < 0.3:
                variety.saucer(draw, mug, k, vary)

    if scene.device is not None:
        rect = scene.device.rect
        body = (rng.randint(25, 70),) * 3
        draw.rounded_rectangle(box(rect), radius=1.0 * k, fill=body)
        keys = Rect(rect.x0 + 1.5, rect.y0 + 1.5, rect.x1 - 1.5, rect.y1 - 1.5)
        if scene.device.kind == "laptop":  # a screen half and a keyboard half
            horizontal = rect.width >= rect.height
            half = (
                Rect(rect.x0 + 1.5, rect.y0 + 1.5, rect.x1 - 1.5, (rect.y0 + rect.y1) / 2)
                if horizontal
                else Rect(rect.x0 + 1.5, rect.y0 + 1.5, (rect.x0 + rect.x1) / 2, rect.y1 - 1.5)
            )
            draw.rectangle(box(half), fill=(rng.randint(20, 60), rng.randint(40, 90), 120))
            keys = (
                Rect(half.x0, half.y1 + 1, rect.x1 - 1.5, rect.y1 - 1.5)
                if horizontal
                else Rect(half.x1 + 1, half.y0, rect.x1 - 1.5, rect.y1 - 1.5)
            )
        key = shade(body, 1.8)
        step = 1.9
        y = keys.y0
        while y + 1.4 <= keys.y1:
            x = keys.x0
            while x + 1.4 <= keys.x1:
                draw.rectangle(box(Rect(x, y, x + 1.4, y + 1.4)), fill=key)
                x += step
            y += step

    for coaster in scene.coasters:
        shape = coaster.shape
        if coaster.square:
            draw.rounded_rectangle(
                disc(shape),
                radius=0.8 * k,
                fill=coaster.colour,
                outline=shade(coaster.colour, 0.6),
                width=_SS * 2,
            )
        else:
            draw.ellipse(
                disc(shape), fill=coaster.colour, outline=shade(coaster.colour, 0.6), width=_SS * 2
            )
        if vary is not None:
            variety.coaster_material(
                draw, shape.cx, shape.cy, shape.radius, coaster.colour, k, vary
            )

    # Soft shadows under the mugs, then the mugs: handle ring, body, rim and contents.
    shadow = Image.new("L", canvas.size, 0)
    shadow_draw = ImageDraw.Draw(shadow)
    light = rng.uniform(0, 2 * math.pi)
    reach = 0.8 if vary is None else vary.uniform(0.2, 2.5)  # varied: a high or a low light
    for mug in scene.mugs:
        offset = Circle(
            mug.body.cx + reach * math.cos(light),
            mug.body.cy + reach * math.sin(light),
            mug.body.diameter,
        )
        darkness = rng.randint(70, 130)
        if vary is not None:
            darkness = vary.randint(50, 180)
        shadow_draw.ellipse(disc(offset, 0.3), fill=darkness)
    softness = 1.2 if vary is None else vary.uniform(0.2, 1.6)  # varied: hard to soft light
    shadow = shadow.filter(ImageFilter.GaussianBlur(softness * k))
    canvas = Image.composite(Image.new("RGB", canvas.size, (0, 0, 0)), canvas, shadow)
    draw = ImageDraw.Draw(canvas)
    for mug in scene.mugs:
        body = mug.body
        angle = math.radians(HANDLE_DIRECTIONS[mug.handle_direction])
        hx = body.cx + (body.radius + 0.9) * math.cos(angle)
        hy = body.cy + (body.radius + 0.9) * math.sin(angle)
        if vary is None:
            handle = Circle(hx, hy, 3.2)
            draw.ellipse(disc(handle), outline=shade(mug.colour, 0.85), width=int(0.9 * k))
        else:
            variety.handle(draw, mug, angle, k, vary)
        draw.ellipse(disc(body), fill=shade(mug.colour, 0.8))
        draw.ellipse(disc(body, -0.5), fill=mug.colour)
        contents = rng.choice([(60, 35, 20), (110, 70, 40), shade(mug.colour, 0.6)])
        draw.ellipse(disc(body, -1.0), fill=contents)
        if vary is not None:
            variety.mug_details(draw, mug, k, vary)

    image = canvas.resize((size, size), Image.Resampling.LANCZOS)

    # Lighting: a linear gradient across the picture, then sensor noise and blur.
    array = np.asarray(image, dtype=np.float32)
    gx, gy = rng.uniform(-0.25, 0.25), rng.uniform(-0.25, 0.25)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    gain = rng.uniform(0.8, 1.15) + gx * ramp[None, :] + gy * ramp[:, None]
    array = array * gain[:, :, None]
    noise = np.random.default_rng(scene.seed).normal(0, rng.uniform(1, 7), array.shape)
    image = Image.fromarray(np.clip(array + noise, 0, 255).astype(np.uint8))
    blur = rng.uniform(0, 1.0)
    if blur > 0.3:
        image = image.filter(ImageFilter.GaussianBlur(blur))

    # A slight perspective tilt; labels go through the same mapping as the pixels.
    forward = tilt(size, perspective, rng)
    image = warp(image, forward, Image.Resampling.BILINEAR, _contrasting_floor(scene))
    lens = 0.0
    if vary is not None:  # a lens that bows straight lines a little, either way
        lens = vary.uniform(-variety.LENS_DISTORTION, variety.LENS_DISTORTION)
        image = distort(image, lens, _contrasting_floor(scene))
        image = variety.camera(image, vary)
    return Shot(image, scene_labels(scene, forward, size, lens), forward, lens)


def scene_jpegs(first_seed: int, count: int, size: int, quality: int = 90) -> list[bytes]:
    """Generated scenes as JPEG files, as a camera would send them (demo, benchmarks, tests)."""
    import io

    from core.synth.scene import sample_scene

    encoded = []
    for seed in range(first_seed, first_seed + count):
        image, _ = render_scene(sample_scene(seed, size), size)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        encoded.append(buffer.getvalue())
    return encoded
