"""Charts are PNG images a phone shows sharply, with Vietnamese and Chinese text drawn, not
boxes (a missing glyph makes matplotlib warn, and warnings fail these tests)."""

from __future__ import annotations

import warnings
from datetime import date, timedelta

from handlers import charts

PNG = b"\x89PNG\r\n\x1a\n"


def check(png: bytes) -> None:
    assert png.startswith(PNG)
    width = int.from_bytes(png[16:20], "big")
    height = int.from_bytes(png[20:24], "big")
    assert (width, height) == (960, 720)


def test_every_chart_draws_vietnamese_and_chinese_text() -> None:
    days = [date(2026, 11, 1) + timedelta(days=n) for n in range(10)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph … missing from font(s)" fails the test
        check(
            charts.funnel(
                "Phễu bán hàng",
                [("Khách tiềm năng", 120), ("Đủ điều kiện", 80), ("Thành công", 18)],
                [("Khách tiềm năng", 20)],
                "Thất bại",
            )
        )
        check(charts.pie("线索来源", [("Zalo", 50), ("推荐", 8), ("Hội chợ", 3)], "其他"))
        check(charts.lines("转化", days, [("成交", list(range(10)), charts.WON)]))
        check(charts.bars("Nhân viên dẫn đầu", [("Nguyễn Thị Mai", 12), ("Đặng Văn Đức", 7)]))


def test_charts_of_many_slices_or_no_steps_are_still_drawn() -> None:
    slices = [(f"S{n}", n + 1) for n in range(12)]
    check(charts.pie("Sources", slices, "Other"))
    check(charts.funnel("Empty", [], [], "Lost"))  # nothing yet: still an image, no error
