"""Change detection for `--on-change`: has anything in the picture changed since the last frame
sent, a mug put down, moved or taken away?

A perceptual hash (dHash, pHash: 64 bits of global structure) cannot answer that: measured on the
generator's 320 px scenes, a 40 px mug appearing flips a median of 4 of dHash's 64 bits (none at
all in some places), while JPEG recompression and sensor noise flip up to 4, so no threshold
tells them apart. So the fingerprint here is a 32 x 32 grid of colour block means (the picture
averaged down), and the distance between two fingerprints is the number of blocks whose colour
changed by more than CHANGE_LEVEL of 255, after fitting out a global exposure change (gain and
offset per channel, least squares: a camera's auto-exposure is no change). Measured on the same
scenes: JPEG at quality 40, noise of sigma 10, 20 % darker: 0 blocks; a 24 px mug appearing: 4
blocks or more; a 40 px mug: 11 or more. Numpy only."""

from __future__ import annotations

import numpy as np

GRID = 32
BLOCKS = GRID * GRID
CHANGE_LEVEL = 16.0  # of 255: a block changed by less is the same block
# An exposure change scales brightness by a positive factor; anything outside these bounds (a
# mirrored or inverted picture fits a negative one) is no exposure change.
GAIN_BOUNDS = (0.5, 2.0)


def _block_means(plane: np.ndarray, rows: int, cols: int) -> np.ndarray:
    height, width = plane.shape
    if height < rows or width < cols:  # a tiny picture: repeat pixels so every block has one
        plane = np.repeat(np.repeat(plane, -(-rows // height), axis=0), -(-cols // width), axis=1)
        height, width = plane.shape
    row_edges = np.linspace(0, height, rows + 1).astype(int)
    col_edges = np.linspace(0, width, cols + 1).astype(int)
    sums = np.add.reduceat(np.add.reduceat(plane, row_edges[:-1], axis=0), col_edges[:-1], axis=1)
    return sums / np.outer(np.diff(row_edges), np.diff(col_edges))


def fingerprint(image: np.ndarray) -> np.ndarray:
    """GRID x GRID x 3 block means (float32) of a picture: H x W grey or H x W x 3|4 colour."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"not an image array: shape {image.shape}")
    planes = image[..., :3].astype(np.float32)
    means = [_block_means(planes[..., c], GRID, GRID) for c in range(planes.shape[2])]
    if len(means) == 1:
        means *= 3
    return np.stack(means, axis=-1).astype(np.float32)


def changed_blocks(before: np.ndarray, after: np.ndarray, level: float = CHANGE_LEVEL) -> int:
    """How many blocks changed by more than `level` in any channel, once a global gain (within
    GAIN_BOUNDS) and offset per channel, the exposure, is fitted out (least squares)."""
    a = before.reshape(-1, 3).astype(np.float64)
    b = after.reshape(-1, 3).astype(np.float64)
    worst = np.zeros(len(a))
    for channel in range(3):
        x, y = a[:, channel], b[:, channel]
        spread = float(np.var(x))
        gain = float(np.mean((x - x.mean()) * (y - y.mean()))) / spread if spread > 0 else 1.0
        gain = min(max(gain, GAIN_BOUNDS[0]), GAIN_BOUNDS[1])
        offset = y.mean() - gain * x.mean()
        worst = np.maximum(worst, np.abs(y - (gain * x + offset)))
    return int((worst > level).sum())


class ChangeFilter:
    """Skips a frame that differs from the last frame *sent* in at most `threshold` blocks: a
    scene that drifts slowly is still sent once it has drifted far enough from what the
    pipeline last saw, and a small flicker (a camera's clock overlay, an LED) is ignored."""

    def __init__(self, threshold: int) -> None:
        if not 0 <= threshold < BLOCKS:
            raise ValueError(f"the change threshold must be from 0 to {BLOCKS - 1} blocks")
        self.threshold = threshold
        self.last_sent: np.ndarray | None = None

    def unchanged(self, frame_print: np.ndarray) -> bool:
        """Whether the frame shows nothing new since the last frame sent."""
        if self.last_sent is None:
            return False
        return changed_blocks(self.last_sent, frame_print) <= self.threshold

    def sent(self, frame_print: np.ndarray) -> None:
        self.last_sent = frame_print
