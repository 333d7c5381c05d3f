"""PNG charts for reports and the digest, drawn headless with matplotlib and sized for a phone:
large type, few colours, every bar labelled with its number. Text is in the reader's language;
DejaVu Sans draws Vietnamese, and a CJK font (WenQuanYi Micro Hei, or Noto Sans CJK) Chinese;
without one, Chinese is drawn as boxes and the log says once which package to install."""

from __future__ import annotations

import io
import logging
import re
import textwrap
import threading
from collections.abc import Sequence
from datetime import date

import matplotlib

matplotlib.use("Agg")  # headless: no display, and safe off the main thread

from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

log = logging.getLogger(__name__)

# A CJK font without a bold face is drawn regular in bold titles; nothing to warn about.
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

WIDTH, HEIGHT, DPI = 6.4, 4.8, 150  # 960 × 720 px: sharp on a phone, small to send
PALETTE = ("#2E7D32", "#1565C0", "#F9A825", "#6A1B9A", "#00838F", "#EF6C00", "#AD1457", "#546E7A")
WON, LOST, NEUTRAL = "#2E7D32", "#C62828", "#1565C0"
_FALLBACKS = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans CJK JP", "Droid Sans Fallback")
CJK_PACKAGE = "fonts-wqy-microhei"  # Debian's package of the first of _FALLBACKS
# Text no font of DejaVu's draws: Han ideographs (with extension A and the compatibility ones),
# CJK punctuation, kana, Hangul and full-width forms.
_CJK_TEXT = re.compile(
    "[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
)
_told = threading.Lock()  # charts are drawn in worker threads too
_told_no_cjk_font = False


def _fonts() -> list[str]:
    installed = {font.name for font in font_manager.fontManager.ttflist}
    if not installed.intersection(_FALLBACKS):
        installed |= _add_fonts_installed_since_the_cache()
    return ["DejaVu Sans", *(name for name in _FALLBACKS if name in installed)]


def _add_fonts_installed_since_the_cache() -> set[str]:
    """matplotlib reads its font list from a cache made the first time it ran, so a CJK font
    installed since is not seen until the cache is deleted; look for such files on disk."""
    known = {font.fname for font in font_manager.fontManager.ttflist}
    for path in font_manager.findSystemFonts():
        if path not in known:
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):  # a file FreeType cannot read
                continue
    return {font.name for font in font_manager.fontManager.ttflist}


def cjk_font() -> str | None:
    """The CJK font charts draw Chinese with: the first of the fallbacks installed (and in
    matplotlib's font list), or None."""
    family = matplotlib.rcParams["font.family"]
    names = [family] if isinstance(family, str) else family
    return next((name for name in names if name in _FALLBACKS), None)


def _tell_if_cjk_is_drawn_as_boxes(figure: Figure) -> None:
    """Once per process, a one-line warning naming the package to install when a chart has
    CJK text and no font to draw it (matplotlib only warns glyph by glyph, and not in the log)."""
    global _told_no_cjk_font
    if _told_no_cjk_font or cjk_font() is not None:
        return
    if not any(_CJK_TEXT.search(text.get_text()) for text in figure.findobj(Text)):
        return
    with _told:
        if _told_no_cjk_font:
            return
        _told_no_cjk_font = True
    log.warning(
        "charts draw Chinese as boxes: no CJK font (%s) is installed; install Debian's %s "
        "and restart",
        ", ".join(_FALLBACKS),
        CJK_PACKAGE,
    )


matplotlib.rcParams.update(
    {
        "font.family": _fonts(),  # a list: glyphs missing from one come from the next
        "font.size": 12,
        "axes.titlesize": 15,
        "axes.titleweight": "bold",
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)


def funnel(
    title: str, steps: Sequence[tuple[str, int]], lost: Sequence[tuple[str, int]], lost_label: str
) -> bytes:
    """Horizontal bars, the first step on top; the lost, by the stage they were lost at,
    beside in red."""
    figure, axes = _figure()
    labels = [label for label, _ in steps] + [f"{lost_label}: {label}" for label, _ in lost]
    values = [value for _, value in steps] + [value for _, value in lost]
    colours = [NEUTRAL] * (len(steps) - 1) + [WON] * bool(steps) + [LOST] * len(lost)
    positions = list(range(len(values)))[::-1]
    axes.barh(positions, values, color=colours)
    axes.set_yticks(positions, labels=[_short(label) for label in labels])
    _label_bars(axes, positions, values)
    axes.set_title(_fit(title))
    axes.xaxis.set_visible(False)
    return _png(figure)


def pie(title: str, slices: Sequence[tuple[str, int]], other_label: str) -> bytes:
    """The largest seven slices and the rest together."""
    figure, axes = _figure()
    ranked = sorted(slices, key=lambda item: -item[1])
    shown = list(ranked[:7])
    rest = sum(value for _, value in ranked[7:])
    if rest:
        shown.append((other_label, rest))
    values = [value for _, value in shown]
    axes.pie(
        values,
        labels=[f"{_short(label, 18)} ({value})" for label, value in shown],
        colors=PALETTE[: len(shown)],
        startangle=90,
        counterclock=False,
        wedgeprops={"linewidth": 1, "edgecolor": "white"},
    )
    axes.set_title(_fit(title), pad=28)  # above the labels of small slices at the top
    axes.axis("equal")
    return _png(figure)


def lines(
    title: str,
    days: Sequence[date],
    series: Sequence[tuple[str, Sequence[int], str]],
    *,
    monthly: bool = False,
) -> bytes:
    """One line per (label, values, colour) over the days (or months)."""
    figure, axes = _figure()
    for label, values, colour in series:
        axes.plot(
            list(days),  # type: ignore[arg-type]  # matplotlib's stubs omit its date support
            list(values),
            marker="o",
            color=colour,
            label=label,
            linewidth=2,
        )
    axes.set_title(_fit(title), pad=30)
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(series), frameon=False)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(bottom=0)
    axes.tick_params(axis="x", labelrotation=30)
    axes.xaxis.set_major_formatter(
        DateFormatter("%m/%Y" if monthly else "%d/%m")  # type: ignore[no-untyped-call]
    )
    return _png(figure)


def bars(
    title: str,
    rows: Sequence[tuple[str, float]],
    *,
    colours: Sequence[str] | None = None,
    decimals: int = 0,
) -> bytes:
    """Horizontal bars, the first row on top (the leaderboard, stages); one colour per row
    when given, values shown with `decimals` digits."""
    figure, axes = _figure()
    positions = list(range(len(rows)))[::-1]
    values = [value for _, value in rows]
    axes.barh(positions, values, color=list(colours) if colours else WON)
    axes.set_yticks(positions, labels=[_short(label) for label, _ in rows])
    _label_bars(axes, positions, values, decimals)
    axes.set_title(_fit(title))
    axes.xaxis.set_visible(False)
    return _png(figure)


def empty(title: str, message: str) -> bytes:
    """A chart with nothing to draw: the title and why, so the reader is not left guessing."""
    figure, axes = _figure()
    axes.set_title(_fit(title))
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=16, color="#546E7A", wrap=True)
    axes.axis("off")
    return _png(figure)


def _figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    return figure, figure.add_subplot()


def _label_bars(
    axes: Axes, positions: Sequence[int], values: Sequence[float], decimals: int = 0
) -> None:
    top = max(values, default=0) or 1
    for position, value in zip(positions, values, strict=True):
        axes.text(value + top * 0.01, position, f"{value:.{decimals}f}", va="center")
    axes.set_xlim(0, top * 1.15)


def _fit(title: str, width: int = 44) -> str:
    """A title too wide for the image goes on two lines, broken after its subject (before
    the " · " that starts the dates) or else between words."""
    if len(title) <= width:
        return title
    head, dot, tail = title.partition(" · ")
    if dot and len(head) <= width and len(tail) <= width:
        return f"{head}\n{tail}"
    return textwrap.fill(title, width)


def _short(label: str, limit: int = 22) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _png(figure: Figure) -> bytes:
    _tell_if_cjk_is_drawn_as_boxes(figure)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
