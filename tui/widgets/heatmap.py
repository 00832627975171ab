"""AttentionMap: an attention-weight heatmap drawn with Textual's Line API.

Takes plain numpy data: one (T_q, T_k) matrix or a stack (L, nh, T_q, T_k). Shows one layer/head,
the mean over heads, or an L x nh grid of small maps. Colours span the absolute range [0, 1] (weights
are probabilities) or, as an option, each map's own maximum. Cells grow to fill the widget. A
keyboard/mouse cursor reports the exact weight under it (caption + CellHighlighted message), since
colour alone is not readable everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
from rich.cells import cell_len, set_cell_size
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from core.text import safe_label

N_LEVELS = 64  # colour quantisation; the caption always shows the exact weight
EMPTY_HINT = "no attention yet — start training"
# viridis anchors: perceptually uniform, dark blue-violet -> yellow, readable for most colour blindness
RAMP_ANCHORS = np.array(
    [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], dtype=np.float64
)
CURSOR_RGB = (255, 64, 255)  # not on the ramp, so the cursor stays visible on any cell
MAX_LABEL_CELLS = 4
SCALES = ("absolute", "map")  # colour range [0, 1], or [0, the map's own maximum]
MAX_CELL_H = 6  # lines per matrix row when a small map grows to fill the pane


def ramp_rgb(t: float) -> tuple[int, int, int]:
    """Colour of a value t in [0, 1] on the ramp, as an (r, g, b) tuple."""
    t = 0.0 if not np.isfinite(t) else min(max(float(t), 0.0), 1.0)
    pos = t * (len(RAMP_ANCHORS) - 1)
    i = min(int(pos), len(RAMP_ANCHORS) - 2)
    frac = pos - i
    rgb = RAMP_ANCHORS[i] * (1.0 - frac) + RAMP_ANCHORS[i + 1] * frac
    return int(round(rgb[0])), int(round(rgb[1])), int(round(rgb[2]))


_LEVEL_COLORS = [Color.from_rgb(*ramp_rgb(i / (N_LEVELS - 1))) for i in range(N_LEVELS)]
_CURSOR_COLOR = Color.from_rgb(*CURSOR_RGB)


def level_color(level: int) -> Color:
    """The rich Color for a quantised level in [0, N_LEVELS)."""
    return _LEVEL_COLORS[level]


def finite_max(mat: np.ndarray) -> float:
    """The largest finite value of mat (0.0 when there is none)."""
    finite = mat[np.isfinite(mat)]
    return float(finite.max()) if finite.size else 0.0


def quantize(mat: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Map a matrix to colour levels over [0, vmax] (default: its own finite maximum; non-finite -> 0)."""
    m = np.where(np.isfinite(mat), mat, 0.0)
    if vmax is None:
        vmax = float(m.max()) if m.size else 0.0
    if vmax <= 0.0:
        vmax = 1.0
    return np.clip(np.rint(m / vmax * (N_LEVELS - 1)), 0, N_LEVELS - 1).astype(np.int16)


def pool(mat: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Mean-pool a (R, C) matrix down to at most (rows, cols) (never upsamples)."""
    r_edges = np.linspace(0, mat.shape[0], min(rows, mat.shape[0]) + 1).astype(int)
    c_edges = np.linspace(0, mat.shape[1], min(cols, mat.shape[1]) + 1).astype(int)
    out = np.add.reduceat(np.add.reduceat(mat, r_edges[:-1], axis=0), c_edges[:-1], axis=1)
    counts = np.outer(np.diff(r_edges), np.diff(c_edges))
    return out / counts


def _contrast(rgb: tuple[int, int, int]) -> Color:
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return Color.from_rgb(0, 0, 0) if luma > 140 else Color.from_rgb(255, 255, 255)


class _Layout(NamedTuple):
    width: int
    height: int
    half: bool  # two matrix rows per terminal line ('▀': fg = upper, bg = lower)
    cell_w: int  # terminal columns per matrix column
    cell_h: int  # terminal lines per matrix row (1 in half-block mode: two rows a line)
    label_w: int  # row-label column width (a space follows it)
    lines: int  # terminal lines available to the matrix
    vis_rows: int
    vis_cols: int


@dataclass(frozen=True)
class CellInfo:
    """What the cursor points at."""

    row: int
    col: int
    weight: float
    row_label: str
    col_label: str


class AttentionMap(Widget, can_focus=True):
    """Heatmap of attention weights with token labels, a cursor and layer/head/mean/grid views."""

    DEFAULT_CSS = """
    AttentionMap {
        width: 1fr;
        height: 1fr;
        min-height: 5;
    }
    AttentionMap > .attention-map--label { color: $text-muted; }
    AttentionMap > .attention-map--cursor-label { color: $text; background: $accent 40%; text-style: bold; }
    AttentionMap > .attention-map--title { color: $text; text-style: bold; }
    AttentionMap > .attention-map--caption { color: $text; }
    AttentionMap > .attention-map--hint { color: $text-muted; text-style: italic; }
    """
    COMPONENT_CLASSES = {
        "attention-map--label",
        "attention-map--cursor-label",
        "attention-map--title",
        "attention-map--caption",
        "attention-map--hint",
    }
    BINDINGS = [
        Binding("up", "move(-1, 0)", "Up", show=False),
        Binding("down", "move(1, 0)", "Down", show=False),
        Binding("left", "move(0, -1)", "Left", show=False),
        Binding("right", "move(0, 1)", "Right", show=False),
        Binding("left_square_bracket", "layer(-1)", "Prev layer", key_display="["),
        Binding("right_square_bracket", "layer(1)", "Next layer", key_display="]"),
        Binding("comma", "head(-1)", "Prev head", key_display=","),
        Binding("full_stop", "head(1)", "Next head", key_display="."),
        Binding("m", "toggle_mean", "Mean heads"),
        Binding("g", "toggle_grid", "Grid"),
        Binding("a", "toggle_scale", "Colour scale"),
        Binding("enter", "open_tile", "Open", show=False),
    ]

    class CellHighlighted(Message):
        """The cursor moved, or the data/view under it changed."""

        def __init__(
            self, attention_map: AttentionMap, row: int, col: int, weight: float,
            row_label: str, col_label: str,
        ) -> None:
            super().__init__()
            self.attention_map = attention_map
            self.row, self.col, self.weight = row, col, weight
            self.row_label, self.col_label = row_label, col_label

        @property
        def control(self) -> AttentionMap:
            return self.attention_map

    class ViewChanged(Message):
        """The layer, head, mean or grid selection changed."""

        def __init__(self, attention_map: AttentionMap, layer: int, head: int, mean_heads: bool,
                     grid: bool) -> None:
            super().__init__()
            self.attention_map = attention_map
            self.layer, self.head, self.mean_heads, self.grid = layer, head, mean_heads, grid

        @property
        def control(self) -> AttentionMap:
            return self.attention_map

    map_layer: reactive[int] = reactive(0, init=False)  # not `layer`: Widget.layer names the CSS layer
    head: reactive[int] = reactive(0, init=False)
    mean_heads: reactive[bool] = reactive(False, init=False)
    grid: reactive[bool] = reactive(False, init=False)
    cursor: reactive[tuple[int, int]] = reactive((0, 0), init=False)
    scale: reactive[str] = reactive("absolute", init=False)

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None, disabled: bool = False) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self._maps: np.ndarray | None = None  # (L, nh, Tq, Tk) float64
        self._row_labels: list[str] = []
        self._label_w = 1  # widest row label, in cells
        self._col_labels: list[str] = []
        self._view: np.ndarray | None = None  # (Tq, Tk) the displayed matrix
        self._levels: np.ndarray | None = None  # (Tq, Tk) colour levels of _view
        self._tiles: dict[tuple[int, int], np.ndarray] = {}  # grid mode: pooled levels per (layer, head)
        self._tiles_key: tuple | None = None
        self._row0 = 0
        self._col0 = 0
        self._strips: dict[int, Strip] = {}  # matrix lines that do not hold the cursor
        self._layout_key: tuple | None = None
        self._layout: _Layout | None = None
        self._half_styles: dict[tuple[int, int], Style] = {}
        self._bg_styles = [Style(bgcolor=c) for c in _LEVEL_COLORS]

    # ---- public data API -------------------------------------------------------------------

    def set_data(self, weights: np.ndarray, row_labels: Sequence[str] | None = None,
                 col_labels: Sequence[str] | None = None) -> None:
        """Show new weights: (T_q, T_k), (nh, T_q, T_k) or (L, nh, T_q, T_k); labels are tokens."""
        a = np.array(weights, dtype=np.float64)  # copy: never keep a view of the caller's buffer
        if a.ndim == 2:
            a = a[None, None]  # (1, 1, Tq, Tk)
        elif a.ndim == 3:
            a = a[None]  # (1, nh, Tq, Tk)
        if a.ndim != 4 or 0 in a.shape:
            raise ValueError(f"attention weights must be (T_q, T_k) or (L, nh, T_q, T_k), got {a.shape}")
        self._maps = a
        n_layer, n_head, tq, tk = a.shape
        rows = list(row_labels) if row_labels is not None else [str(i) for i in range(tq)]
        cols = list(col_labels) if col_labels is not None else rows[:tk] if len(rows) >= tk else None
        cols = cols if cols is not None else [str(i) for i in range(tk)]
        self._row_labels = _fit_labels(rows, tq)
        self._col_labels = _fit_labels(cols, tk)
        self._label_w = max(cell_len(s) for s in self._row_labels)
        self.set_reactive(AttentionMap.map_layer, min(self.map_layer, n_layer - 1))
        self.set_reactive(AttentionMap.head, min(self.head, n_head - 1))
        r, c = self.cursor
        self.set_reactive(AttentionMap.cursor, (min(r, tq - 1), min(c, tk - 1)))
        self._tiles_key = None
        self._rebuild_view()

    def clear(self) -> None:
        """Drop the data and show the empty-state hint."""
        self._maps = self._view = self._levels = None
        self._tiles_key = None
        self._invalidate()

    @property
    def has_data(self) -> bool:
        return self._maps is not None

    @property
    def shape(self) -> tuple[int, ...] | None:
        """(L, nh, T_q, T_k) of the current data, or None."""
        return None if self._maps is None else tuple(self._maps.shape)

    @property
    def view_matrix(self) -> np.ndarray | None:
        """A copy of the (T_q, T_k) matrix in view (layer/head, or the mean over heads)."""
        return None if self._view is None else self._view.copy()

    @property
    def highlighted(self) -> CellInfo | None:
        """The cell under the cursor with its exact weight, or None without data."""
        if self._view is None:
            return None
        r, c = self.cursor
        return CellInfo(r, c, float(self._view[r, c]), self._row_labels[r], self._col_labels[c])

    @property
    def caption(self) -> str:
        """The one-line caption shown at the bottom."""
        if self._maps is None:
            return ""
        if self.grid:
            return f"layer {self.map_layer + 1} head {self.head + 1} — enter opens, g leaves the grid"
        cell = self.highlighted
        assert cell is not None
        return (f"q={cell.row_label}  k={cell.col_label}  w={_fmt_weight(cell.weight)}"
                f"   (row {cell.row}, col {cell.col})")

    @property
    def title(self) -> str:
        """The one-line view description shown at the top."""
        if self._maps is None:
            return ""
        n_layer, n_head = self._maps.shape[:2]
        if self.grid:
            return f"all heads: {n_layer} layers × {n_head} heads"
        which = f"mean of {n_head} heads" if self.mean_heads else f"head {self.head + 1}/{n_head}"
        vmax = finite_max(self._view) if self._view is not None else 0.0
        return f"layer {self.map_layer + 1}/{n_layer}  {which}  max {vmax:.3f}"

    @property
    def color_range(self) -> tuple[float, float]:
        """(low, high) weights of the colour ramp's ends for the map in view."""
        if self.scale == "absolute" or self._view is None:
            return 0.0, 1.0
        vmax = finite_max(self._view)
        return 0.0, vmax if vmax > 0.0 else 1.0

    @property
    def half_block(self) -> bool:
        """True when the current layout packs two matrix rows per terminal line."""
        return self._get_layout().half

    # ---- reactives -------------------------------------------------------------------------

    def validate_map_layer(self, value: int) -> int:
        n = self._maps.shape[0] if self._maps is not None else 1
        return max(0, min(int(value), n - 1))

    def validate_head(self, value: int) -> int:
        n = self._maps.shape[1] if self._maps is not None else 1
        return max(0, min(int(value), n - 1))

    def validate_cursor(self, value: tuple[int, int]) -> tuple[int, int]:
        if self._maps is None:
            return (max(0, int(value[0])), max(0, int(value[1])))
        tq, tk = self._maps.shape[2:]
        return (max(0, min(int(value[0]), tq - 1)), max(0, min(int(value[1]), tk - 1)))

    def watch_map_layer(self) -> None:
        self._rebuild_view()
        self._post_view_changed()

    def watch_head(self) -> None:
        self._rebuild_view()
        self._post_view_changed()

    def watch_mean_heads(self) -> None:
        self._rebuild_view()
        self._post_view_changed()

    def validate_scale(self, value: str) -> str:
        if value not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {value!r}")
        return value

    def watch_scale(self) -> None:
        self._tiles_key = None
        self._rebuild_view()
        self._post_view_changed()

    def watch_grid(self) -> None:
        self._invalidate()
        self._post_view_changed()
        self._post_highlight()

    def watch_cursor(self) -> None:
        self._strips.clear()  # the cursor's old and new lines change; cheap to rebuild
        self.refresh()
        self._post_highlight()

    # ---- actions ---------------------------------------------------------------------------

    def action_move(self, d_row: int, d_col: int) -> None:
        if self._maps is None:
            return
        if self.grid:  # in the grid the cursor selects a tile: rows are layers, columns heads
            self.map_layer += d_row
            self.head += d_col
            return
        r, c = self.cursor
        self.cursor = (r + d_row, c + d_col)

    def action_layer(self, delta: int) -> None:
        self.map_layer += delta

    def action_head(self, delta: int) -> None:
        if self.mean_heads and not self.grid:
            self.mean_heads = False
        self.head += delta

    def action_toggle_mean(self) -> None:
        self.mean_heads = not self.mean_heads

    def action_toggle_scale(self) -> None:
        self.scale = "map" if self.scale == "absolute" else "absolute"

    def action_toggle_grid(self) -> None:
        self.grid = not self.grid

    def action_open_tile(self) -> None:
        if self.grid:
            self.mean_heads = False
            self.grid = False

    # ---- events ----------------------------------------------------------------------------

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or self._maps is None:
            return
        cell = self._grid_tile_at(offset.x, offset.y) if self.grid else self._cell_at(offset.x, offset.y)
        if cell is None:
            return
        if self.grid:
            if cell == (self.map_layer, self.head):
                self.action_open_tile()
            else:
                self.map_layer, self.head = cell
        else:
            self.cursor = cell

    def on_resize(self, event: events.Resize) -> None:
        self._invalidate()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    # ---- rendering -------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self._maps is None:
            return self._hint_line(y)
        lay = self._get_layout()
        if y == lay.height - 1:
            return self._text_line(self.caption, "attention-map--caption", width)
        if y == 0:
            return self._text_line(self.title, "attention-map--title", width)
        if self.grid:
            return self._grid_line(y - 1, lay)
        if y == 1:
            return self._header_line(lay)
        i = y - 2
        first = self._row0 + (2 * i if lay.half else i // lay.cell_h)
        if i >= lay.vis_rows * lay.cell_h // (2 if lay.half else 1) or first >= self._maps.shape[2]:
            return Strip.blank(width)
        rows = (first, first + 1) if lay.half else (first,)
        if self.cursor[0] in rows:
            return self._matrix_line(rows, lay, i % lay.cell_h)
        strip = self._strips.get(i)
        if strip is None:
            strip = self._strips[i] = self._matrix_line(rows, lay, i % lay.cell_h)
        return strip

    def _hint_line(self, y: int) -> Strip:
        width, height = self.size
        if y != max(0, (height - 1) // 2):
            return Strip.blank(width)
        text = set_cell_size(EMPTY_HINT, min(width, cell_len(EMPTY_HINT)))
        pad = max(0, (width - cell_len(text)) // 2)
        style = self.get_component_rich_style("attention-map--hint")
        return Strip([Segment(" " * pad), Segment(text, style)]).adjust_cell_length(width)

    def _text_line(self, text: str, component: str, width: int) -> Strip:
        style = self.get_component_rich_style(component)
        return Strip([Segment(set_cell_size(text, min(width, cell_len(text))), style)]).adjust_cell_length(width)

    def _header_line(self, lay: _Layout) -> Strip:
        label = self.get_component_rich_style("attention-map--label")
        cursor = self.get_component_rich_style("attention-map--cursor-label")
        segs = [Segment(" " * (lay.label_w + 1))]
        for c in range(self._col0, min(self._col0 + lay.vis_cols, len(self._col_labels))):
            text = _centre(self._col_labels[c], lay.cell_w)
            segs.append(Segment(text, cursor if c == self.cursor[1] else label))
        return Strip(segs).adjust_cell_length(lay.width)

    def _matrix_line(self, rows: tuple[int, ...], lay: _Layout, sub: int = 0) -> Strip:
        """One terminal line of matrix rows `rows`; `sub` is the line within a grown cell."""
        assert self._levels is not None
        tq = self._levels.shape[0]
        cur_r, cur_c = self.cursor
        mid = sub == lay.cell_h // 2  # a grown cell shows its label and cursor mark on its middle line
        on_cursor = cur_r in rows and mid
        style = self.get_component_rich_style(
            "attention-map--cursor-label" if on_cursor else "attention-map--label")
        if lay.half:
            text = "".join(set_cell_size(self._row_labels[r], 1) if r < tq else " " for r in rows)
        else:
            text = self._row_labels[rows[0]] if mid else ""
        segs = [Segment(set_cell_size(text, lay.label_w), style), Segment(" ")]
        c_end = min(self._col0 + lay.vis_cols, self._levels.shape[1])
        if lay.half:
            upper = self._levels[rows[0]]
            lower = self._levels[rows[1]] if rows[1] < tq else None
            for c in range(self._col0, c_end):
                u = -1 if (on_cursor and c == cur_c and cur_r == rows[0]) else int(upper[c])
                lo = -2 if lower is None else (
                    -1 if (on_cursor and c == cur_c and cur_r == rows[1]) else int(lower[c]))
                segs.append(Segment("▀", self._half_style(u, lo)))
        else:
            levels = self._levels[rows[0]]
            for c in range(self._col0, c_end):
                lvl = int(levels[c])
                if on_cursor and c == cur_c:
                    rgb = ramp_rgb(lvl / (N_LEVELS - 1))
                    segs.append(Segment(_centre("[]", lay.cell_w),
                                        Style(bgcolor=_LEVEL_COLORS[lvl], color=_contrast(rgb), bold=True)))
                else:
                    segs.append(Segment(" " * lay.cell_w, self._bg_styles[lvl]))
        return Strip(segs).adjust_cell_length(lay.width)

    def _half_style(self, upper: int, lower: int) -> Style:
        """Style for '▀': level >= 0, -1 = cursor colour, -2 = no lower row (plain background)."""
        key = (upper, lower)
        style = self._half_styles.get(key)
        if style is None:
            fg = _CURSOR_COLOR if upper == -1 else _LEVEL_COLORS[upper]
            bg = None if lower == -2 else (_CURSOR_COLOR if lower == -1 else _LEVEL_COLORS[lower])
            style = self._half_styles[key] = Style(color=fg, bgcolor=bg)
        return style

    # ---- grid mode -------------------------------------------------------------------------

    def _grid_dims(self, lay: _Layout) -> tuple[int, int, int]:
        """(tile width, tile height incl. its header line, gap) for the L x nh grid."""
        assert self._maps is not None
        n_layer, n_head = self._maps.shape[:2]
        gap = 1
        tile_w = max(1, (lay.width - gap * (n_head - 1)) // n_head)
        tile_h = max(1, (lay.height - 2) // n_layer)
        return tile_w, tile_h, gap

    def _ensure_tiles(self, lay: _Layout) -> None:
        assert self._maps is not None
        tile_w, tile_h, _ = self._grid_dims(lay)
        key = (tile_w, tile_h, id(self._maps))
        if self._tiles_key == key:
            return
        self._tiles = {}
        n_layer, n_head = self._maps.shape[:2]
        px_rows = max(1, 2 * (tile_h - 1))
        for li in range(n_layer):
            for hi in range(n_head):
                tile = pool(self._maps[li, hi], px_rows, tile_w)
                self._tiles[li, hi] = quantize(tile, 1.0 if self.scale == "absolute" else None)
        self._tiles_key = key

    def _grid_line(self, yy: int, lay: _Layout) -> Strip:
        assert self._maps is not None
        self._ensure_tiles(lay)
        tile_w, tile_h, gap = self._grid_dims(lay)
        n_layer, n_head = self._maps.shape[:2]
        li, k = divmod(yy, tile_h)
        if li >= n_layer or tile_h < 2:
            if yy == 0 and tile_h < 2:
                return self._text_line("too small for the grid — enlarge or press g", "attention-map--hint",
                                       lay.width)
            return Strip.blank(lay.width)
        segs: list[Segment] = []
        label = self.get_component_rich_style("attention-map--label")
        cursor = self.get_component_rich_style("attention-map--cursor-label")
        for hi in range(n_head):
            if hi:
                segs.append(Segment(" " * gap))
            if k == 0:
                sel = (li, hi) == (self.map_layer, self.head)
                segs.append(Segment(set_cell_size(f"L{li + 1} H{hi + 1}", tile_w), cursor if sel else label))
                continue
            tile = self._tiles[li, hi]
            r = 2 * (k - 1)
            if r >= tile.shape[0]:
                segs.append(Segment(" " * tile_w))
                continue
            lower = tile[r + 1] if r + 1 < tile.shape[0] else None
            for c in range(tile.shape[1]):
                segs.append(Segment("▀", self._half_style(int(tile[r, c]), -2 if lower is None else int(lower[c]))))
            if tile.shape[1] < tile_w:
                segs.append(Segment(" " * (tile_w - tile.shape[1])))
        return Strip(segs).adjust_cell_length(lay.width)

    def _grid_tile_at(self, x: int, y: int) -> tuple[int, int] | None:
        lay = self._get_layout()
        tile_w, tile_h, gap = self._grid_dims(lay)
        assert self._maps is not None
        li, hi = (y - 1) // tile_h, x // (tile_w + gap)
        if y < 1 or li >= self._maps.shape[0] or hi >= self._maps.shape[1]:
            return None
        return li, hi

    # ---- layout and caches -----------------------------------------------------------------

    def _get_layout(self) -> _Layout:
        width, height = self.size
        shape = None if self._maps is None else self._maps.shape[2:]
        label_w = self._label_w
        key = (width, height, shape, label_w)
        if key != self._layout_key or self._layout is None:
            self._layout = _compute_layout(width, height, shape, min(max(label_w, 1), MAX_LABEL_CELLS))
            self._layout_key = key
            self._strips.clear()
        self._scroll_to_cursor(self._layout)
        return self._layout

    def _scroll_to_cursor(self, lay: _Layout) -> None:
        r, c = self.cursor
        row0, col0 = self._row0, self._col0
        if lay.vis_rows > 0:
            if r < row0:
                row0 = r
            elif r >= row0 + lay.vis_rows:
                row0 = r - lay.vis_rows + 1
            if lay.half:
                row0 -= row0 % 2
        if lay.vis_cols > 0:
            if c < col0:
                col0 = c
            elif c >= col0 + lay.vis_cols:
                col0 = c - lay.vis_cols + 1
        if (row0, col0) != (self._row0, self._col0):
            self._row0, self._col0 = max(0, row0), max(0, col0)
            self._strips.clear()

    def _cell_at(self, x: int, y: int) -> tuple[int, int] | None:
        lay = self._get_layout()
        i, xc = y - 2, x - lay.label_w - 1
        if i < 0 or i >= lay.lines or xc < 0:
            return None
        c = self._col0 + xc // lay.cell_w
        r = self._row0 + (2 * i if lay.half else i // lay.cell_h)
        if lay.half and self.cursor == (r, c):
            r += 1  # a second click on the same half-block picks its lower row
        assert self._maps is not None
        if r >= self._maps.shape[2] or c >= self._maps.shape[3] or xc // lay.cell_w >= lay.vis_cols:
            return None
        return r, c

    def _rebuild_view(self) -> None:
        """Recompute the displayed matrix and its colour levels (on data or view change only)."""
        if self._maps is None:
            self._invalidate()
            return
        maps = self._maps[self.map_layer]  # (nh, Tq, Tk)
        self._view = maps.mean(axis=0) if self.mean_heads else maps[self.head]  # (Tq, Tk)
        self._levels = quantize(self._view, 1.0 if self.scale == "absolute" else None)
        self._invalidate()
        self._post_highlight()

    def _invalidate(self) -> None:
        self._strips.clear()
        self._layout_key = None
        self.refresh()

    def _post_highlight(self) -> None:
        cell = self.highlighted
        if cell is not None and not self.grid and self.is_attached:
            self.post_message(self.CellHighlighted(self, cell.row, cell.col, cell.weight,
                                                   cell.row_label, cell.col_label))

    def _post_view_changed(self) -> None:
        if self.is_attached:
            self.post_message(self.ViewChanged(self, self.map_layer, self.head, self.mean_heads, self.grid))


def _compute_layout(width: int, height: int, shape: tuple[int, int] | None, label_w: int) -> _Layout:
    """Choose full cells (2 columns x 1 line) or half-blocks (1 column x half a line) to fit."""
    lines = max(0, height - 3)  # title, column header, caption
    avail_w = max(0, width - label_w - 1)
    if shape is None:
        return _Layout(width, height, False, 2, 1, label_w, lines, lines, avail_w // 2)
    tq, tk = shape
    half = tk * 2 > avail_w or tq > lines
    if half:
        label_w = 2  # two one-cell labels, upper then lower row
        avail_w = max(0, width - label_w - 1)
        return _Layout(width, height, True, 1, 1, label_w, lines, 2 * lines, avail_w)
    # grow a small map to fill the space, keeping cells about twice as wide as tall (square on screen)
    cell_h = max(1, min(lines // tq, avail_w // (2 * tk), MAX_CELL_H))
    cell_w = 2 * cell_h
    return _Layout(width, height, False, cell_w, cell_h, label_w, lines, lines // cell_h, avail_w // cell_w)


def _fit_labels(labels: list[str], n: int) -> list[str]:
    """Sanitised labels, padded with indices or truncated to exactly n."""
    out = [safe_label(str(s)) or "·" for s in labels[:n]]
    out += [str(i) for i in range(len(out), n)]
    return out


def _centre(text: str, width: int) -> str:
    """text cut or padded to exactly `width` cells, centred."""
    text = set_cell_size(text, min(cell_len(text), width))
    left = (width - cell_len(text)) // 2
    return " " * left + text + " " * (width - left - cell_len(text))


def _fmt_weight(w: float) -> str:
    return f"{w:.3f}" if np.isfinite(w) else str(w)
