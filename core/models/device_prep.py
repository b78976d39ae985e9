"""The detector's input built on the model's own device: JPEG bytes or uint8 pixels in, a
normalised NCHW batch and each image's Letterbox out.

Why: on a GPU worker the host, not the GPU, sets the pace (docs/PERFORMANCE.md: decoding and
letterboxing 640 px scenes on the CPU gives ~100 img/s per process, the model ~1,200 img/s). Here
JPEGs are decoded by nvJPEG (torchvision's batched `decode_jpeg`), and resizing, padding and
scaling to [0, 1] are torch ops on the device; only compressed bytes or uint8 pixels cross the bus
(pinned, asynchronous), never float32. The same code runs on CPU (libjpeg-turbo, torch CPU ops),
which is how the tests hold it to core.models.letterbox.

The geometry is core.models.letterbox's own (`layout`), so boxes map back exactly as on the host
path, and the pixels are what core.models.letterbox makes of the fully decoded image to within one
grey level: bilinear without antialiasing, as cv2.INTER_LINEAR. Not the pipeline's host
preprocess (decode_image(fit=...)): its JPEGs are decoded at a 1/2-1/8 DCT scale when the input is
half their size or less, which moves a 320 px model's boxes by up to ~1 px on 640 px scenes, more
on larger ones; nvJPEG has no DCT scaling to match it with.

Per image, whatever the rest of the batch does: a file failing the pre-decode checks is refused
with decode_image's reason code; greyscale, CMYK and non-JPEG files, and any JPEG the device
decoder fails on, are decoded by decode_image on the host instead (a batched decode fails the
whole batch on one bad file, so a failed batch is retried one file at a time first); EXIF
orientation, which nvJPEG ignores, is read from the header and applied to the tensor.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg

from core.imaging import ImageHeader, ImageLimits, ImageRejected, decode_image, read_header
from core.models.letterbox import PAD_VALUE, Letterbox, layout

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PreparedBatch:
    """The images that made it, as one model-ready tensor, and the others with their refusal."""

    tensor: torch.Tensor  # (len(rows), 3, size, size), the model's dtype, on its device
    letterboxes: list[Letterbox]  # one per row
    rows: list[int]  # one per row: the index of its input
    rejected: dict[int, ImageRejected]  # input index -> why it was refused


class DevicePrep:
    """Builds model input of `size` x `size` on `device` in `dtype` (fp16 when the model is)."""

    def __init__(self, size: int, device: str, dtype: torch.dtype = torch.float32) -> None:
        self.size = size
        self.device = torch.device(device)
        self.dtype = dtype
        self._cuda = self.device.type == "cuda"

    def from_letterboxed(self, images: list[np.ndarray]) -> torch.Tensor:
        """HWC uint8 images already letterboxed to the input size (upstream, by the split
        pipeline's preprocess stage) -> the batch, as core.models.letterbox.to_batch makes it."""
        host = self._host_buffer((len(images), self.size, self.size, 3))
        np.stack(images, out=host.numpy())
        return self._normalise(self._to_device(host).permute(0, 3, 1, 2))

    def from_pixels(self, images: list[np.ndarray]) -> tuple[torch.Tensor, list[Letterbox]]:
        """RGB uint8 HWC images of any sizes -> the batch and each image's letterbox."""
        return self._letterbox([self._upload(image).permute(2, 0, 1) for image in images])

    def from_encoded(self, data: list[bytes], limits: ImageLimits | None = None) -> PreparedBatch:
        """Image files (JPEG on the device; anything else, or what it cannot decode, on the
        host) -> the batch of those that decode, and the reason for each that does not."""
        limits = limits or ImageLimits()
        rejected: dict[int, ImageRejected] = {}
        headers: dict[int, ImageHeader] = {}
        for index, item in enumerate(data):
            try:
                headers[index] = read_header(item, limits)
            except ImageRejected as exc:
                rejected[index] = exc
        on_device = [i for i, h in headers.items() if h.format == "jpeg" and h.mode == "RGB"]
        decoded: dict[int, torch.Tensor] = {}
        jpegs = self._decode_jpegs([data[i] for i in on_device])
        for index, pixels in zip(on_device, jpegs, strict=True):
            if pixels is not None:
                decoded[index] = orient(pixels, headers[index].orientation)
        for index in sorted(headers.keys() - decoded.keys()):
            try:  # in full, as the device decodes: every image of the batch is treated alike
                image = decode_image(data[index], limits)
            except ImageRejected as exc:
                rejected[index] = exc
                continue
            decoded[index] = self._upload(image.pixels).permute(2, 0, 1)
        rows = sorted(decoded)
        tensor, letterboxes = self._letterbox([decoded[i] for i in rows])
        return PreparedBatch(tensor, letterboxes, rows, rejected)

    def _decode_jpegs(self, data: list[bytes]) -> list[torch.Tensor | None]:
        """RGB uint8 CHW tensors on the device; None for a file the decoder fails on."""
        if not data:
            return []
        encoded = [torch.frombuffer(bytearray(item), dtype=torch.uint8) for item in data]
        try:
            return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device))
        except (RuntimeError, ValueError):
            log.info("batched JPEG decode of %d files failed; decoding one by one", len(data))
        return [self._decode_one(item) for item in encoded]

    def _decode_one(self, encoded: torch.Tensor) -> torch.Tensor | None:
        try:
            return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)
        except (RuntimeError, ValueError):
            log.debug("the JPEG decoder on %s failed on a file; the host decodes it", self.device)
            return None

    def _letterbox(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, list[Letterbox]]:
        """Each upright uint8 CHW image resized into its place on grey padding; images of one
        shape are resized together, so a batch from one camera costs a few kernel launches."""
        size = self.size
        canvas = torch.full(
            (len(images), 3, size, size), PAD_VALUE, dtype=torch.uint8, device=self.device
        )
        letterboxes = []
        by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
        for row, image in enumerate(images):
            height, width = image.shape[1:]
            letterboxes.append(layout(width, height, size)[0])
            by_shape[(width, height)].append(row)
        for (width, height), rows in by_shape.items():
            box, (new_w, new_h) = layout(width, height, size)
            resized = _resize(torch.stack([images[row] for row in rows]), new_w, new_h)
            canvas[rows, :, box.pad_y : box.pad_y + new_h, box.pad_x : box.pad_x + new_w] = resized
        return self._normalise(canvas), letterboxes

    def _normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> the model's dtype in [0, 1], on the device."""
        return batch.to(self.dtype).div_(255.0).contiguous()

    def _host_buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Host memory for uint8 pixels, page-locked when they go to a GPU (asynchronous copy)."""
        return torch.empty(shape, dtype=torch.uint8, pin_memory=self._cuda)

    def _to_device(self, host: torch.Tensor) -> torch.Tensor:
        return host.to(self.device, non_blocking=self._cuda)

    def _upload(self, array: np.ndarray) -> torch.Tensor:
        host = self._host_buffer(array.shape)
        host.numpy()[...] = array
        return self._to_device(host)


def _resize(batch: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """uint8 NCHW -> uint8 N x C x `height` x `width`, bilinear without antialiasing and rounded,
    as cv2.resize(INTER_LINEAR) does on the host."""
    if tuple(batch.shape[-2:]) == (height, width):
        return batch
    scaled = F.interpolate(
        batch.float(), size=(height, width), mode="bilinear", align_corners=False, antialias=False
    )
    return scaled.round_().clamp_(0, 255).to(torch.uint8)


def orient(pixels: torch.Tensor, orientation: int) -> torch.Tensor:
    """A CHW image turned upright by its EXIF orientation, as Pillow's exif_transpose does."""
    rows, cols = 1, 2
    match orientation:
        case 2:  # mirrored left-right
            return pixels.flip(cols)
        case 3:  # turned 180 degrees
            return pixels.flip(rows, cols)
        case 4:  # mirrored top-bottom
            return pixels.flip(rows)
        case 5:  # mirrored along the main diagonal
            return pixels.transpose(rows, cols)
        case 6:  # needs a quarter turn clockwise
            return pixels.rot90(-1, (rows, cols))
        case 7:  # mirrored along the other diagonal
            return pixels.transpose(rows, cols).flip(rows, cols)
        case 8:  # needs a quarter turn counter-clockwise
            return pixels.rot90(1, (rows, cols))
    return pixels
