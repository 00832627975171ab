"""Reusable dashboard widgets; each takes plain data (numpy arrays, lists, strings), never engine objects."""

from .chat import ChatPane
from .colorbar import ColorBar
from .explain import Explain
from .heatmap import AttentionMap
from .lossplot import LossPlot
from .lrspark import LRSpark
from core.text import safe_label, safe_text
from .scorechart import HeadScoreChart
from .stats import StatsPanel
from .timelinebar import TimelineBar

__all__ = ["AttentionMap", "ChatPane", "ColorBar", "Explain", "HeadScoreChart", "LRSpark", "LossPlot",
           "StatsPanel", "TimelineBar", "safe_label", "safe_text"]
