"""Turning untrusted bytes into a model-ready RGB image, or a clear rejection with a reason code."""

from core.imaging.decode import (
    DecodedImage,
    ImageHeader,
    ImageLimits,
    ImageRejected,
    decode_image,
    probe_image,
    read_header,
    sniff_format,
)

__all__ = [
    "DecodedImage",
    "ImageHeader",
    "ImageLimits",
    "ImageRejected",
    "decode_image",
    "probe_image",
    "read_header",
    "sniff_format",
]
