"""Files as badly written tools or hostile people make them, built by code for the tests."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable

from openpyxl import Workbook

SHEET = "xl/worksheets/sheet1.xml"
PEOPLE = [
    ["Số điện thoại", "Họ và tên"],
    ["0912345678", "Nguyễn Văn An"],
    ["0912345679", "Trần Thị Bình"],
    ["0912345670", "Lê Cường"],
]


def workbook(rows: list[list[object]], *more_sheets: str) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Khách hàng"
    for row in rows:
        sheet.append(row)
    for name in more_sheets:
        book.create_sheet(name).append(["Phone"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def rewritten(data: bytes, change: Callable[[str], str], entry: str = SHEET) -> bytes:
    """The workbook with one of its files changed, as another tool might have written it."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            content = source.read(item)
            if item.filename == entry:
                content = change(content.decode()).encode()
            target.writestr(item, content)
    return out.getvalue()


def declaring(data: bytes, size: int, entry: str = SHEET) -> bytes:
    """The workbook with its central directory claiming that `entry` unpacks to `size` bytes
    (a lie a zip bomb may tell, or the truth of a huge sheet)."""
    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    while at >= 0:
        name_length = struct.unpack_from("<H", out, at + 28)[0]
        if out[at + 46 : at + 46 + name_length].decode() == entry:
            out[at + 24 : at + 28] = struct.pack("<I", size)  # its uncompressed size
            return bytes(out)
        at = out.find(b"PK\x01\x02", at + 46)
    raise ValueError(f"{entry} is not in the workbook")
