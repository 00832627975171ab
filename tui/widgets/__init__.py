"""Reusable dashboard widgets; each takes plain data (numpy arrays, lists, strings), never engine objects."""

from .chat import ChatPane
from .heatmap import AttentionMap
from .lossplot import LossPlot
from .lrspark import LRSpark
from core.text import safe_label, safe_text
from .stats import StatsPanel

__all__ = ["AttentionMap", "ChatPane", "LRSpark", "LossPlot", "StatsPanel", "safe_label", "safe_text"]
