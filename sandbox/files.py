"""What the emulator needs to know about uploaded bytes: picture sizes and media types."""

from __future__ import annotations

import mimetypes
import struct

GENERIC_TYPE = "application/octet-stream"


def media_type(file_name: str, declared: str | None) -> str:
    """HTTP clients often declare every upload as octet-stream; the file name knows better."""
    if declared and declared != GENERIC_TYPE:
        return declared
    guessed, _ = mimetypes.guess_type(file_name)
    return guessed or GENERIC_TYPE


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, GIF or JPEG picture; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 9 < len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        (segment_length,) = struct.unpack(">H", data[position + 2 : position + 4])
        # Start-of-frame markers carry the size; 0xC4, 0xC8 and 0xCC share the range but do not.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        position += 2 + segment_length
    return None
