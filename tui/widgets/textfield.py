"""A text field whose editing keys act in the order they were typed.

Textual's Input inserts a printable character in its own key handler, but its bound keys (backspace,
arrows, home/end, ctrl+k, enter) run only once the key has bubbled up to the app's binding check.
Keys that arrive back to back (a fast typist, a busy machine while training runs, a paste of keys
through tmux) can then apply out of order: a, b, backspace, c gave "ab" instead of "ac" (Textual
issue #6605). TextField runs its own bindings inside its key handler, where the characters go.
"""

from textual import events
from textual.widgets import Input


class TextField(Input):
    """Input whose own (non-priority) bindings run inline, in key order with the typed characters."""

    async def _on_key(self, event: events.Key) -> None:
        if not event.is_printable:
            for binding in self._bindings.key_to_bindings.get(event.key, ()):
                # app priority bindings were checked before the key got here; ours run now, not later
                if not binding.priority and await self.app.run_action(binding.action, self):
                    event.stop()
                    event.prevent_default()
                    self._restart_blink()
                    return
        await super()._on_key(event)
