"""Turning untrusted bytes into a model-ready RGB image, or a clear rejection with a reason code."""

from core.imaging.decode import (
    DecodedImage,
    ImageLimits,
    ImageRejected,
    decode_image,
    probe_image,
    sniff_format,
)

__all__ = [
    "DecodedImage",
    "ImageLimits",
    "ImageRejected",
    "decode_image",
    "probe_image",
    "sniff_format",
]
