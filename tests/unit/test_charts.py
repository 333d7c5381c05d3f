"""Charts are PNG images a phone shows sharply, with Vietnamese and Chinese text drawn, not
boxes (a missing glyph makes matplotlib warn, and warnings fail these tests); without a CJK
font, the log says once which package draws Chinese."""

from __future__ import annotations

import logging
import warnings
from datetime import date, timedelta

import matplotlib
import pytest

from handlers import charts
from tests.conftest import require

PNG = b"\x89PNG\r\n\x1a\n"


def check(png: bytes) -> None:
    assert png.startswith(PNG)
    width = int.from_bytes(png[16:20], "big")
    height = int.from_bytes(png[20:24], "big")
    assert (width, height) == (960, 720)


def test_every_chart_draws_vietnamese_and_chinese_text() -> None:
    require(
        charts.cjk_font() is not None,
        f"no CJK font to draw Chinese: `apt-get install {charts.CJK_PACKAGE}`",
    )
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


@pytest.mark.filterwarnings("ignore:Glyph")  # matplotlib's own, glyph by glyph
def test_chinese_without_a_cjk_font_is_drawn_after_one_warning_naming_the_package(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(charts, "_told_no_cjk_font", False)  # as in a process just started
    caplog.set_level(logging.WARNING, logger=charts.__name__)
    with matplotlib.rc_context({"font.family": ["DejaVu Sans"]}):  # a server without one
        assert charts.cjk_font() is None
        check(charts.bars("Nhân viên dẫn đầu", [("Nguyễn Thị Mai", 12)]))
        assert caplog.records == []  # DejaVu Sans draws Vietnamese
        check(charts.pie("线索来源", [("Zalo", 50), ("推荐", 8)], "其他"))
        check(charts.funnel("漏斗", [("线索", 3)], [], "流失"))
    [told] = caplog.records  # once per process, not once per chart
    assert told.levelno == logging.WARNING
    assert "fonts-wqy-microhei" in told.getMessage()
    assert "\n" not in told.getMessage()
