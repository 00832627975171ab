"""Tests for the reusable dashboard widgets, each mounted alone in a throwaway App and driven by Pilot."""

from __future__ import annotations

import math

import numpy as np
import pytest
from textual.app import App, ComposeResult
from textual.widgets import Sparkline

from tui.widgets.chat import ChatPane, ChatTurn
from tui.widgets.heatmap import (
    EMPTY_HINT,
    N_LEVELS,
    AttentionMap,
    level_color,
    pool,
    quantize,
    ramp_rgb,
)
from tui.widgets.lossplot import EMA_CYCLE, BoundedSeries, LossPlot, bucket_downsample, ema
from tui.widgets.lrspark import LRSpark
from core.text import safe_label, safe_text
from tui.widgets.stats import StatsPanel, fmt_eta, fmt_si, format_stats

SIZE = (100, 40)


class OneWidgetApp(App):
    """Mounts one widget and records the messages it posts."""

    def __init__(self, widget) -> None:
        super().__init__()
        self.widget = widget
        self.messages: list = []

    def compose(self) -> ComposeResult:
        yield self.widget

    def on_attention_map_cell_highlighted(self, message: AttentionMap.CellHighlighted) -> None:
        self.messages.append(message)

    def on_attention_map_view_changed(self, message: AttentionMap.ViewChanged) -> None:
        self.messages.append(message)

    def on_chat_pane_submitted(self, message: ChatPane.Submitted) -> None:
        self.messages.append(message)


def lines(widget) -> list[str]:
    return [widget.render_line(y).text for y in range(widget.size.height)]


def bg_rgb(segment) -> tuple[int, int, int]:
    return tuple(segment.style.bgcolor.triplet)


def fg_rgb(segment) -> tuple[int, int, int]:
    return tuple(segment.style.color.triplet)


def level_rgb(level: int) -> tuple[int, int, int]:
    return tuple(level_color(level).triplet)


# ---- sanitize -------------------------------------------------------------------------------


def test_safe_text_escapes_controls_and_keeps_plain_text():
    assert safe_text("hello [bold] world") == "hello [bold] world"
    assert safe_text("\x1b[31mred") == "\\x1b[31mred"
    assert "\x1b" not in safe_text("a\x1b]0;title\x07b\x9bc")
    assert safe_text("a\u202eb") == "a\\u202eb"  # bidi override cannot reorder the line
    assert safe_text("a\nb\tc") == "a\\x0ab\\x09c"
    assert safe_text("a\nb\tc", keep_newlines=True) == "a\nb    c"
    assert safe_text("x\r\ny", keep_newlines=True) == "x\\x0d\ny"


def test_safe_label_makes_whitespace_visible():
    assert safe_label(" ") == "␣"
    assert safe_label("\n") == "⏎"
    assert safe_label("\x1b") == "\\x1b"
    assert safe_label("ab") == "ab"


# ---- heatmap: pure helpers ------------------------------------------------------------------


def test_ramp_runs_dark_blue_to_yellow():
    lo, hi = ramp_rgb(0.0), ramp_rgb(1.0)
    assert lo[2] > lo[0] and lo[2] > lo[1] and sum(lo) < 200  # dark, blue-ish
    assert hi[0] > 200 and hi[1] > 200 and hi[2] < 80  # yellow
    lum = [0.299 * r + 0.587 * g + 0.114 * b for r, g, b in (ramp_rgb(t) for t in np.linspace(0, 1, 11))]
    assert all(b > a for a, b in zip(lum, lum[1:]))  # brightness rises monotonically
    assert ramp_rgb(float("nan")) == lo and ramp_rgb(2.0) == hi


def test_quantize_scales_by_max_and_handles_nan():
    q = quantize(np.array([[0.0, 0.25], [0.5, np.nan]]))
    assert q.tolist() == [[0, 32], [N_LEVELS - 1, 0]]
    assert quantize(np.zeros((2, 2))).max() == 0


def test_pool_means_blocks():
    m = np.arange(16, dtype=float).reshape(4, 4)
    np.testing.assert_allclose(pool(m, 2, 2), [[2.5, 4.5], [10.5, 12.5]])
    assert pool(m, 10, 10).shape == (4, 4)  # never upsamples


# ---- heatmap: widget ------------------------------------------------------------------------


async def test_heatmap_empty_state_shows_centred_hint():
    app = OneWidgetApp(AttentionMap())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        shown = lines(app.widget)
        hint_rows = [i for i, t in enumerate(shown) if EMPTY_HINT in t]
        assert len(hint_rows) == 1
        row = shown[hint_rows[0]]
        left = len(row) - len(row.lstrip(" "))
        right = len(row) - len(row.rstrip(" "))
        assert abs(left - right) <= 1
        assert app.widget.highlighted is None and app.widget.caption == ""


async def test_heatmap_colours_labels_and_caption():
    w = np.array([[1.0, 0.0], [0.5, 0.5]])
    hm = AttentionMap()
    app = OneWidgetApp(hm)
    async with app.run_test(size=(100, 5)) as pilot:  # 2 lines for 2 rows: cells stay 2 x 1
        hm.set_data(w, ["P", " "])
        await pilot.pause()
        assert not hm.half_block
        assert "P ␣" in hm.render_line(1).text  # column header, 2 cells per column
        row0 = hm.render_line(2)
        segs = list(row0)
        assert segs[0].text.startswith("P")
        cells = segs[2:4]
        assert cells[0].text == "[]"  # the cursor cell is marked, not only coloured
        assert bg_rgb(cells[0]) == level_rgb(N_LEVELS - 1)
        assert bg_rgb(cells[1]) == level_rgb(0)
        row1 = list(hm.render_line(3))
        assert row1[0].text.startswith("␣")
        assert bg_rgb(row1[2]) == bg_rgb(row1[3]) == level_rgb(round(0.5 * (N_LEVELS - 1)))
        assert hm.render_line(hm.size.height - 1).text.startswith("q=P  k=P  w=1.000")


async def test_heatmap_cursor_keys_report_exact_weight():
    w = np.array([[0.873, 0.127, 0.0], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3]])
    hm = AttentionMap()
    app = OneWidgetApp(hm)
    async with app.run_test(size=SIZE) as pilot:
        hm.set_data(w, ["a", "b", "c"], ["x", "y", "z"])
        hm.focus()
        await pilot.press("down", "right", "right")
        await pilot.pause()
        assert hm.cursor == (1, 2)
        cell = hm.highlighted
        assert (cell.row, cell.col, cell.weight, cell.row_label, cell.col_label) == (1, 2, 0.5, "b", "z")
        assert hm.caption.startswith("q=b  k=z  w=0.500")
        last = [m for m in app.messages if isinstance(m, AttentionMap.CellHighlighted)][-1]
        assert (last.row, last.col, last.weight, last.row_label, last.col_label) == (1, 2, 0.5, "b", "z")
        await pilot.press("right", "down", "down", "down")  # clamps at the edges
        assert hm.cursor == (2, 2)
        await pilot.press("up", "up", "up", "left", "left")
        assert hm.cursor == (0, 0)
        assert hm.highlighted.weight == 0.873
        assert hm.render_line(hm.size.height - 1).text.startswith("q=a  k=x  w=0.873")


async def test_heatmap_click_moves_cursor():
    w = np.arange(16, dtype=float).reshape(4, 4) / 16
    hm = AttentionMap()
    app = OneWidgetApp(hm)
    async with app.run_test(size=(100, 7)) as pilot:  # 4 lines for 4 rows: cells stay 2 x 1
        hm.set_data(w, list("abcd"))
        await pilot.pause()
        # line 2 + row 1; label column (1) + space, then two columns per cell -> col 2 starts at x=6
        await pilot.click(AttentionMap, offset=(6, 3))
        assert hm.cursor == (1, 2)
        assert hm.highlighted.weight == w[1, 2]


async def test_heatmap_cells_grow_to_fill_an_empty_pane_and_clicks_follow():
    w = np.arange(36, dtype=float).reshape(6, 6) / 36
    hm = AttentionMap()
    app = OneWidgetApp(hm)
    async with app.run_test(size=(120, 40)) as pilot:
        hm.set_data(w, list("PYTHON"))
        await pilot.pause()
        lay = hm._get_layout()
        assert (lay.cell_w, lay.cell_h) == (12, 6)  # 37 free lines / 6 rows -> 6 lines a row, capped
        assert 6 * lay.cell_w > 60 and 6 * lay.cell_h > 30  # the map fills most of the 120x40 area
        shown = lines(hm)
        assert shown[1].split() == list("PYTHON")  # column labels centred over their cells
        # row 0 spans lines 2..7; its label and the cursor mark sit on the middle line only
        assert shown[2 + 3].startswith("P ") and shown[2].startswith("  ")
        assert "[]" in shown[2 + 3] and "[]" not in shown[2]
        x = 2 + 3 * 12 + 5  # label (1) + space, then column 3
        await pilot.click(AttentionMap, offset=(x, 2 + 2 * 6 + 1))
        assert hm.cursor == (2, 3) and hm.highlighted.weight == w[2, 3]


async def test_heatmap_absolute_colour_scale_by_default_per_map_as_option():
    w = np.full((4, 4), 0.25)  # uniform: dark on the absolute scale, full bright when scaled to its max
    hm = AttentionMap()
    app = OneWidgetApp(hm)
    async with app.run_test(size=(100, 7)) as pilot:
        hm.set_data(w, list("abcd"))
        hm.focus()
        await pilot.pause()
        assert hm.scale == "absolute" and hm.color_range == (0.0, 1.0)
        assert bg_rgb(list(hm.render_line(3))[3]) == level_rgb(round(0.25 * (N_LEVELS - 1)))
        await pilot.press("a")
        assert hm.scale == "map" and hm.color_range == (0.0, 0.25)
        assert bg_rgb(list(hm.render_line(3))[3]) == level_rgb(N_LEVELS - 1)
        assert hm.highlighted.weight == 0.25  # the cursor still reports the exact weight
        views = [m for m in app.messages if isinstance(m, AttentionMap.ViewChanged)]
        assert views  # the colour bar beside the map follows this message
        await pilot.press("a")
        assert hm.scale == "absolute"


async def test_heatmap_layer_head_mean_and_grid_switching():
    rng = np.random.default_rng(0)
    maps = rng.random((2, 3, 5, 5))  # (L, nh, T, T)
    hm = AttentionMap()
    app = OneWidgetApp(hm)
    async with app.run_test(size=SIZE) as pilot:
        hm.set_data(maps, list("hello"))
        hm.focus()
        await pilot.pause()
        np.testing.assert_array_equal(hm.view_matrix, maps[0, 0])
        await pilot.press("right_square_bracket", "full_stop", "full_stop")
        assert (hm.map_layer, hm.head) == (1, 2)
        np.testing.assert_array_equal(hm.view_matrix, maps[1, 2])
        assert hm.render_line(0).text.startswith("layer 2/2  head 3/3")
        await pilot.press("full_stop", "right_square_bracket")  # clamped, no wrap
        assert (hm.map_layer, hm.head) == (1, 2)
        await pilot.press("comma", "left_square_bracket")
        assert (hm.map_layer, hm.head) == (0, 1)
        await pilot.press("m")
        assert hm.mean_heads
        np.testing.assert_allclose(hm.view_matrix, maps[0].mean(axis=0))
        assert hm.highlighted.weight == pytest.approx(maps[0, :, 0, 0].mean())
        assert "mean of 3 heads" in hm.render_line(0).text
        await pilot.press("m")
        assert not hm.mean_heads
        await pilot.press("g")
        assert hm.grid
        shown = "\n".join(lines(hm))
        assert "all heads: 2 layers × 3 heads" in shown
        for tag in ("L1 H1", "L1 H3", "L2 H1", "L2 H3"):
            assert tag in shown
        assert "▀" in shown
        await pilot.press("down", "right")  # in the grid, arrows select a tile
        assert (hm.map_layer, hm.head) == (1, 2)
        await pilot.press("enter")
        assert not hm.grid
        np.testing.assert_array_equal(hm.view_matrix, maps[1, 2])
        views = [m for m in app.messages if isinstance(m, AttentionMap.ViewChanged)]
        assert views and (views[-1].layer, views[-1].head, views[-1].grid) == (1, 2, False)


async def test_heatmap_half_blocks_for_big_matrix_in_narrow_widget():
    T = 64
    w = np.tril(np.ones((T, T)))
    w /= w.sum(axis=1, keepdims=True)  # (T, T) causal uniform
    hm = AttentionMap()
    app = OneWidgetApp(hm)
    async with app.run_test(size=(60, 30)) as pilot:
        hm.set_data(w, [chr(97 + i % 26) for i in range(T)])
        await pilot.pause()
        assert hm.half_block
        levels = quantize(w)
        line = list(hm.render_line(3))  # matrix line 1: rows 2 and 3
        assert line[0].text == "cd"  # both rows' labels
        cells = line[2:]
        assert all(s.text == "▀" for s in cells)
        for c in (0, 1, 5):
            assert fg_rgb(cells[c]) == level_rgb(levels[2, c])  # upper row in the foreground
            assert bg_rgb(cells[c]) == level_rgb(levels[3, c])  # lower row in the background
        assert len(hm.render_line(3).text) == 60


async def test_heatmap_labels_never_emit_escape_sequences():
    hm = AttentionMap()
    app = OneWidgetApp(hm)
    async with app.run_test(size=SIZE) as pilot:
        hm.set_data(np.full((3, 3), 1 / 3), ["\x1b[31m", " ", "\x07"])
        await pilot.pause()
        shown = "\n".join(lines(hm))
        assert "\x1b" not in shown and "\x07" not in shown
        assert "\\x1b" in shown and "␣" in shown


async def test_heatmap_live_update_keeps_cursor_and_rejects_bad_shapes():
    hm = AttentionMap()
    app = OneWidgetApp(hm)
    async with app.run_test(size=SIZE) as pilot:
        hm.set_data(np.eye(4), list("abcd"))
        hm.cursor = (3, 3)
        hm.set_data(np.eye(4) * 0.5, list("abcd"))
        assert hm.cursor == (3, 3) and hm.highlighted.weight == 0.5
        hm.set_data(np.eye(2), list("ab"))  # smaller: cursor clamps
        assert hm.cursor == (1, 1)
        with pytest.raises(ValueError):
            hm.set_data(np.zeros((1, 2, 3, 4, 4)), [])
        hm.clear()
        await pilot.pause()
        assert any(EMPTY_HINT in t for t in lines(hm))


# ---- lossplot -------------------------------------------------------------------------------


def test_ema_math():
    np.testing.assert_allclose(ema([1.0, 1.0, 1.0], 0.9), [1.0, 1.0, 1.0])  # debiased: no warm-up dip
    np.testing.assert_allclose(ema([3.0, 1.0, 2.0], 0.0), [3.0, 1.0, 2.0])
    out = ema([0.0, 10.0], 0.9)
    assert out[0] == 0.0 and out[1] == pytest.approx(1.0 / 0.19)
    out = ema([2.0, float("nan"), 2.0], 0.5)  # NaN is skipped, not propagated
    np.testing.assert_allclose(out, [2.0, 2.0, 2.0])
    assert ema([], 0.9).size == 0


def test_bucket_downsample():
    xs, ys = np.arange(10.0), np.arange(10.0) * 2
    dx, dy = bucket_downsample(xs, ys, 5)
    np.testing.assert_allclose(dx, [0.5, 2.5, 4.5, 6.5, 8.5])
    np.testing.assert_allclose(dy, 2 * dx)
    sx, sy = bucket_downsample(xs[:3], ys[:3], 5)
    np.testing.assert_array_equal(sx, xs[:3])
    dx, dy = bucket_downsample(np.arange(1001.0), np.ones(1001), 7)
    assert dx.size == 7 and np.all(dy == 1.0) and np.all(np.diff(dx) > 0)


def test_bounded_series_never_grows_past_max():
    s = BoundedSeries(max_points=100)
    for i in range(5000):
        s.append(i, i * 0.1, float(i))
    assert len(s) <= 100 and s.compactions > 0
    assert s.steps[-1] == 4999 and s.values[-1] == 4999.0  # newest points stay exact
    assert all(b > a for a, b in zip(s.steps, s.steps[1:]))  # still ordered
    assert s.values == s.steps  # averaged pairs keep (step, value) consistent
    with pytest.raises(ValueError):
        BoundedSeries(max_points=2)


async def test_lossplot_throttles_and_flags_downsampling():
    plot = LossPlot(max_points=1000, refresh_interval=60.0)  # the timer never fires in this test
    app = OneWidgetApp(plot)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        before = plot.redraws
        for i in range(3000):
            plot.add_point("train", i, i * 0.01, 3.0 * math.exp(-i / 500) + 0.1)
        for i in range(0, 3000, 100):
            plot.add_point("val", i, i * 0.01, 3.0 * math.exp(-i / 500) + 0.2)
        assert plot.redraws == before and plot.dirty  # add_point never replots
        assert len(plot.history["train"]) <= 1000
        plot._tick()
        plot._tick()
        assert plot.redraws == before + 1 and not plot.dirty
        assert plot.downsampled
        await pilot.pause()
        assert "(downsampled)" in plot.render().plain
        with pytest.raises(ValueError):
            plot.add_point("test", 0, 0.0, 1.0)


async def test_lossplot_small_history_is_not_downsampled_and_log_survives_bad_values():
    plot = LossPlot(refresh_interval=60.0)
    app = OneWidgetApp(plot)
    async with app.run_test(size=SIZE) as pilot:
        for i, v in enumerate([2.0, 1.5, 0.0, -1.0, float("nan"), 1.0]):
            plot.add_point("train", i, float(i), v)
        plot.log_y = True
        plot.redraw()
        await pilot.pause()
        assert not plot.downsampled
        assert "(downsampled)" not in plot.render().plain
        assert "(log)" in plot.render().plain  # plotext rescales in place; rendering twice must work
        plot.clear()
        plot.redraw()
        plot.render()  # an empty log plot must not fail either


async def test_lossplot_log_scale_draws_a_solved_task_whose_loss_reaches_zero():
    # a solved task logs losses of exactly 0; their EMA decays towards 1e-100 and beyond
    plot = LossPlot(refresh_interval=60.0)
    app = OneWidgetApp(plot)
    async with app.run_test(size=SIZE) as pilot:
        for i in range(400):
            plot.add_point("train", i, float(i), 3.0 * 0.5 ** i)
        plot.ema = 0.9
        plot.log_y = True
        plot.redraw()
        await pilot.pause()
        text = plot.render().plain
        assert "(log)" in text
        assert min(min(line[1]) for line in plot._lines) >= 1e-9  # the floor, not 1e-120
        assert sum(c in text for c in "⠁⠂⠄⡀⠈⠐⠠⢀⣀⣿") > 0  # a curve is drawn


async def test_lossplot_y_ticks_are_round_numbers_linear_and_log():
    """The y axis is labelled with round numbers: evenly spaced 1, 2, 2.5 or 5 times a power of ten, and on
    a log plot the powers of ten, none far above the highest loss (not 3.86 / 3.22 / 2.58, or 19.8292)."""
    import re
    plot = LossPlot(refresh_interval=60.0)
    app = OneWidgetApp(plot)

    def labels():
        return [m.group(1) for line in plot.render().plain.splitlines()
                for m in [re.match(r"\s*([-0-9.e+]+)┤", line)] if m]
    async with app.run_test(size=SIZE) as pilot:
        for i in range(400):
            plot.add_point("train", i, float(i), 3.86 * math.exp(-i / 30) + 1e-4)
        plot.redraw()
        await pilot.pause()
        ys = [float(x) for x in labels()]
        assert len(ys) >= 3, labels()
        step = ys[0] - ys[1]
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5)), ys
        assert all(math.isclose(a - b, step) for a, b in zip(ys, ys[1:])), ys
        assert all(math.isclose(y / step, round(y / step), abs_tol=1e-6) for y in ys), ys
        plot.log_y = True
        plot.redraw()
        await pilot.pause()
        ys = [float(x) for x in labels()]
        assert len(ys) >= 3 and all(math.isclose(math.log10(y), round(math.log10(y))) for y in ys), labels()
        assert max(ys) <= 10 and min(ys) >= 1e-5, ys  # the curve runs 3.86 .. 1e-4
        plot.clear()  # a narrow range on a log plot (less than a power of ten): still round numbers
        for i in range(400):
            plot.add_point("train", i, float(i), 0.3 + 0.2 * math.exp(-i / 50))
        plot.redraw()
        await pilot.pause()
        ys = [float(x) for x in labels()]
        assert len(ys) >= 2 and all(len(f"{y:.10g}".replace("0.", "").replace(".", "").strip("0")) <= 2
                                    for y in ys), labels()


async def test_lossplot_keys():
    plot = LossPlot(refresh_interval=60.0)
    app = OneWidgetApp(plot)
    async with app.run_test(size=SIZE) as pilot:
        plot.focus()
        assert plot.ema == 0.9
        seen = []
        for _ in range(4):
            await pilot.press("e")
            seen.append(plot.ema)
        assert seen == [0.98, 0.0, 0.6, 0.9]
        assert set(seen) == set(EMA_CYCLE)
        redraws = plot.redraws
        await pilot.press("l")  # a key redraws at once (the 60 s timer never fires here)
        assert plot.log_y and plot.redraws == redraws + 1 and not plot.dirty
        assert "(log)" in plot.render().plain
        await pilot.press("x")
        assert plot.x_axis == "time"
        await pilot.press("x")
        assert plot.x_axis == "step"
        plot.ema = 5.0
        assert plot.ema == 0.99
        with pytest.raises(ValueError):
            plot.x_axis = "epoch"


# ---- lr sparkline ---------------------------------------------------------------------------


async def test_lrspark_is_bounded_and_labelled():
    spark = LRSpark(maxlen=50)
    app = OneWidgetApp(spark)
    async with app.run_test(size=SIZE) as pilot:
        for i in range(120):
            spark.push(1e-3 * (i + 1) / 120)
        spark.push(float("nan"))
        await pilot.pause()
        assert len(spark.values) == 50 and spark.last == pytest.approx(1e-3)
        assert list(spark.query_one(Sparkline).data) == spark.values
        assert "lr 1.00e-03" in str(spark.query_one("Label").content)


# ---- stats ----------------------------------------------------------------------------------


def test_stats_formatting_helpers():
    assert fmt_si(820_000) == "0.82M"
    assert fmt_si(12_345) == "12.3k"
    assert fmt_si(950) == "950"
    assert fmt_si(2_500_000_000) == "2.50G"
    assert fmt_si(None) == "—" and fmt_si(float("nan")) == "—"
    assert fmt_eta(125) == "02:05"
    assert fmt_eta(3725) == "1:02:05"
    assert fmt_eta(None) == "—" and fmt_eta(-3) == "—"


def test_format_stats_estimates_eta_and_marks_unknowns():
    rows = dict(format_stats({"step": 100, "max_steps": 2000, "ms_per_step": 50.0, "loss": 1.23456}))
    assert rows["step"] == "100 / 2,000"
    assert rows["ETA"] == "01:35"  # 1900 steps x 50 ms
    assert rows["loss"] == "1.2346"
    assert rows["val loss"] == "—" and rows["params"] == "—" and rows["metric"] == "—"
    ans = dict(format_stats({"loss": 0.5, "val_loss": 0.25, "best_val": 0.2, "loss_on": "answers"}))
    assert (ans["loss (ans)"], ans["val loss (ans)"], ans["best val (ans)"]) == ("0.5000", "0.2500", "0.2000")
    assert "loss" not in ans and "val loss" not in ans
    assert "weights" not in rows  # a row only for runs that evaluate the weights' running average
    assert dict(format_stats({"weights_avg": 0.999}))["weights"] == "avg 0.999"
    assert "teachers" not in rows  # a row only for runs trained on saves' probabilities (train.teachers)
    assert dict(format_stats({"teachers": 4}))["teachers"] == "4 saves"


async def test_stats_panel_merges_partial_updates():
    panel = StatsPanel()
    app = OneWidgetApp(panel)
    async with app.run_test(size=SIZE) as pilot:
        panel.update_stats({"step": 10, "loss": 2.5, "tokens_per_s": 12_345, "params": 820_000})
        panel.update_stats({"val_loss": 2.25, "best_val": 2.25, "metric_name": "exact\x1b", "metric_value": 0.5})
        await pilot.pause()
        text = panel.content.plain
        for part in ("2.5000", "2.2500", "12.3k", "0.82M", "exact\\x1b", "0.5000"):
            assert part in text
        assert "\x1b" not in text
        panel.update_stats({"loss": None})
        assert dict(panel.rows())["loss"] == "—"


async def test_stats_panel_rows_never_wrap_in_a_narrow_panel():
    """At 80 columns the panel is ~25 characters wide: "step  215 / 6,000" beside the long "best val (ans)"
    label moves its value left instead of wrapping onto a second row (which pushed every row down)."""
    panel = StatsPanel()
    app = OneWidgetApp(panel)
    async with app.run_test(size=SIZE) as pilot:
        panel.styles.width = 27  # 25 inside its padding
        panel.update_stats({"step": 215, "max_steps": 6000, "loss": 1.02, "best_val": None, "params": 820_000,
                            "loss_on": "answers", "ms_per_step": 253.2, "metric_name": "chat_score"})
        for _ in range(100):
            await pilot.pause(0.02)
            if panel.room == panel.content_size.width == 25:
                break
        rows = panel.rows()
        assert panel.region.height == len(rows), (panel.region.height, len(rows))
        lines = panel.content.plain.split("\n")
        assert any(line.startswith("step") and line.endswith("215 / 6,000") for line in lines), lines
        assert max(len(line) for line in lines) <= 25
        label_w = max(len(label) for label, _ in rows)  # the other rows keep their value column
        assert lines[rows.index(next(r for r in rows if r[0] == "params"))].index("0.82M") == label_w + 2
        panel.styles.width = 60  # wide again: the step row's value back in the column
        for _ in range(100):  # the resize lands after a few refreshes on a loaded machine
            await pilot.pause(0.02)
            if panel.room == panel.content_size.width == 58:
                break
        assert panel.content.plain.split("\n")[0].index("215") == label_w + 2


# ---- chat -----------------------------------------------------------------------------------


async def test_chat_submit_posts_message_and_ignores_empty():
    chat = ChatPane()
    app = OneWidgetApp(chat)
    async with app.run_test(size=SIZE) as pilot:
        chat.input.focus()
        await pilot.press("enter")
        await pilot.press("space", "space", "enter")
        await pilot.pause()
        assert app.messages == []
        await pilot.press(*"hi there", "enter")
        await pilot.pause()
        assert [m.text for m in app.messages] == ["hi there"]
        assert chat.transcript() == [("user", "hi there")]
        assert chat.input.value == ""


async def test_chat_streaming_is_batched_then_flushed():
    chat = ChatPane()
    app = OneWidgetApp(chat)
    async with app.run_test(size=SIZE) as pilot:
        chat.add_user("question")
        chat.begin_reply()
        assert chat.busy
        for ch in "answer":
            chat.append_reply(ch)
        turn = list(chat.query(ChatTurn))[-1]
        assert turn.text == ""  # buffered, not yet on screen
        await pilot.pause(0.2)  # the 50 ms flush timer runs
        assert turn.text == "answer"
        chat.append_reply("!")
        chat.end_reply("max tokens")  # end flushes what is left
        assert not chat.busy
        assert turn.text == "answer!"
        assert "[max tokens]" in turn.content.plain
        chat.add_system("sampling failed")
        assert chat.transcript() == [("user", "question"), ("model", "answer!"), ("system", "sampling failed")]
        md = chat.to_markdown()
        assert "**you:** question" in md and "**model:** answer! *[max tokens]*" in md and "> sampling failed" in md
        chat.clear()
        await pilot.pause()
        assert chat.transcript() == [] and not chat.query(ChatTurn)


async def test_chat_drops_the_last_reply_for_a_regenerated_one():
    chat = ChatPane()
    app = OneWidgetApp(chat)
    async with app.run_test(size=SIZE) as pilot:
        assert not chat.drop_last_reply()  # nothing to drop
        for q, a in (("one", "same"), ("two", "same")):  # equal texts: only the last one goes
            chat.add_user(q)
            chat.begin_reply()
            chat.append_reply(a)
            chat.end_reply()
        chat.add_system("a note")
        chat.begin_reply()
        assert not chat.drop_last_reply()  # never while a reply streams
        chat.end_reply()
        assert chat.drop_last_reply()  # the empty reply just closed
        assert chat.drop_last_reply()
        await pilot.pause()
        assert chat.transcript() == [("user", "one"), ("model", "same"), ("user", "two"), ("system", "a note")]
        assert [t.role for t in chat.query(ChatTurn)] == ["user", "model", "user", "system"]


async def test_chat_shows_escapes_and_markup_literally():
    chat = ChatPane()
    app = OneWidgetApp(chat)
    async with app.run_test(size=SIZE) as pilot:
        chat.input.focus()
        chat.input.value = "[bold]hi\x1b[31m"
        await pilot.press("enter")
        chat.begin_reply()
        chat.append_reply("\x1b[31mred[/] [bold]x\nline2")
        chat.end_reply()
        await pilot.pause()
        user, model = list(chat.query(ChatTurn))
        assert user.content.plain == "you  [bold]hi\\x1b[31m"
        assert model.content.plain == "model  \\x1b[31mred[/] [bold]x\nline2"
        assert not any("\x1b" in t.content.plain for t in (user, model))
        assert all(not span.style or span.style == "bold" for span in model.content.spans)  # no markup
        assert "\x1b" not in chat.to_markdown()
        assert chat.transcript()[1] == ("model", "\x1b[31mred[/] [bold]x\nline2")  # raw data kept
