"""What callers of rendering need without decoding anything: the formats it encodes and the
error it raises. Kept apart from ``imaging.dicom.render`` (which loads pydicom, numpy and Pillow)
so that checking a request against a cached render, or catching its error, loads none of them."""

from __future__ import annotations

FORMATS = {"png": "PNG", "webp": "WEBP"}  # our name -> Pillow's


class RenderError(Exception):
    """The frame cannot be rendered; ``reason`` is a short human-readable sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
