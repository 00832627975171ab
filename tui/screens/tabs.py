"""The dashboard's tabs: the tab decides where focus goes, never the other way round.

Textual's TabbedContent also switches to a pane when something inside it gains focus. With keys that
arrive back to back ("4" then F2, on a loaded machine or from a fast typist) a focus queued for the
previous tab could then switch the view back, or leave focus in a hidden pane where the next "q" is
typed into a field nobody sees. Here a tab switch focuses its pane's main widget at once, and only for
the tab that is still active when its message arrives; digits, like F-keys, are priority bindings
(tui/app.py), so keys act in the order they came.
"""

from __future__ import annotations

from textual.widgets import TabbedContent, TabPane

# the widget each tab focuses when shown
FOCUS = {"setup": "#task-picker", "train": "#loss-plot", "attention": "#attn-map",
         "chat": "#chat-box Input", "saves": "#runs-table"}


class DashboardTabs(TabbedContent):
    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        event.stop()  # focus follows the tab; a focus event never switches it
        event.prevent_default()  # Textual calls the handler of each class up the MRO: not TabbedContent's

    def focus_active(self) -> None:
        """Focus the active tab's main widget now (not after a queue that later keys may overtake)."""
        selector = FOCUS.get(self.active)
        found = self.query(selector) if selector else None
        if found:
            self.screen.set_focus(found.first())
