"""ChatPane: a scrolling log of user / model / system turns above an Input, with batched streaming.

Replies arrive one character at a time; append_reply only buffers, and a 50 ms timer flushes the buffer
into the view, so the screen is not repainted per character. All text is shown through safe_text and
rich Text (never markup), so escape sequences and '[bold]' appear literally.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Input, Static

from core.text import safe_text
from tui.widgets.textfield import TextField

ROLES = ("user", "model", "system")
_PREFIX = {"user": "you", "model": "model", "system": "note"}
FLUSH_INTERVAL = 0.05


class ChatTurn(Static):
    """One turn of the conversation; its role is also a CSS class (-user, -model, -system)."""

    def __init__(self, role: str, text: str = "") -> None:
        self.role = role
        self.text = text
        self.note: str | None = None
        self.entry = [role, text, None]  # the shared transcript entry: role, text, note; kept in step
        super().__init__(self._body(), classes=f"-{role}")

    def show(self) -> None:
        """Redraw from self.text / self.note (sanitised)."""
        self.update(self._body())

    def _body(self) -> Text:
        body = Text(no_wrap=False)
        body.append(f"{_PREFIX[self.role]}  ", style="bold")
        body.append(safe_text(self.text, keep_newlines=True))
        if self.note:
            body.append(f"  [{safe_text(self.note)}]", style="dim italic")
        return body


class ChatPane(Widget):
    """Conversation log plus input line. Posts ChatPane.Submitted(text) on Enter (empty input ignored)."""

    DEFAULT_CSS = """
    ChatPane {
        layout: vertical;
        width: 1fr;
        height: 1fr;
    }
    ChatPane > VerticalScroll {
        height: 1fr;
    }
    ChatPane ChatTurn {
        width: 1fr;
        padding: 0 1;
        margin: 0 0 1 0;
    }
    ChatPane ChatTurn.-user {
        background: $primary 15%;
        border-left: thick $primary;
    }
    ChatPane ChatTurn.-model {
        background: $surface;
        border-left: thick $success;
    }
    ChatPane ChatTurn.-system {
        color: $warning;
        border-left: thick $warning;
    }
    ChatPane > Input {
        dock: bottom;
    }
    """

    class Submitted(Message):
        """The user pressed Enter on a non-empty input."""

        def __init__(self, chat_pane: ChatPane, text: str) -> None:
            super().__init__()
            self.chat_pane = chat_pane
            self.text = text

        @property
        def control(self) -> ChatPane:
            return self.chat_pane

    def __init__(self, *, placeholder: str = "ask the model… (enter to send)", max_turns: int = 200,
                 name: str | None = None, id: str | None = None, classes: str | None = None,
                 disabled: bool = False) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self.placeholder = placeholder
        self.max_turns = max_turns
        self._transcript: list[list] = []  # [role, raw text, note or None]
        self._reply: ChatTurn | None = None
        self._pending: list[str] = []
        self._flush_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield VerticalScroll()
        yield TextField(placeholder=self.placeholder)

    @property
    def input(self) -> Input:
        return self.query_one(Input)

    @property
    def busy(self) -> bool:
        """True between begin_reply() and end_reply()."""
        return self._reply is not None

    # ---- public API ------------------------------------------------------------------------

    def add_user(self, text: str) -> None:
        """Show a user turn (done automatically on Enter)."""
        self._add_turn("user", text)

    def add_system(self, text: str) -> None:
        """Show a notice or error, styled apart from the conversation."""
        self._add_turn("system", text)

    def begin_reply(self) -> None:
        """Start a model turn that append_reply() streams into."""
        if self._reply is not None:
            self.end_reply()
        self._reply = self._add_turn("model", "")
        self._pending = []
        self._flush_timer = self.set_interval(FLUSH_INTERVAL, self.flush)

    def append_reply(self, chunk: str) -> None:
        """Buffer a chunk of the reply; it reaches the screen on the next flush (<= 50 ms)."""
        if self._reply is None:
            self.begin_reply()
        self._pending.append(chunk)

    def end_reply(self, note: str | None = None) -> None:
        """Flush and close the model turn; note (e.g. 'stopped', 'max tokens') is shown dimmed."""
        if self._reply is None:
            return
        self.flush()
        if note:
            self._reply.note = self._reply.entry[2] = note
            self._reply.show()
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        self._reply = None

    def flush(self) -> None:
        """Move buffered chunks into the current reply now."""
        if self._reply is None or not self._pending:
            return
        self._reply.text += "".join(self._pending)
        self._pending = []
        self._reply.entry[1] = self._reply.text
        self._reply.show()
        self._scroll_end()

    def drop_last_reply(self) -> bool:
        """Remove the last finished model turn, so that a regenerated one takes its place.

        Returns False (and changes nothing) while a reply streams or when there is none.
        """
        if self._reply is not None:
            return False
        live = {id(e) for e in self._transcript}  # a widget being removed may still be queried
        replies = [t for t in self.query_one(VerticalScroll).query(ChatTurn)
                   if t.role == "model" and id(t.entry) in live]
        if not replies:
            return False
        last = replies[-1]
        self._transcript[:] = [e for e in self._transcript if e is not last.entry]
        last.remove()
        return True

    def clear(self) -> None:
        """Remove every turn (an open reply is closed first)."""
        self.end_reply()
        self._transcript.clear()
        self.query_one(VerticalScroll).remove_children()

    def transcript(self) -> list[tuple[str, str]]:
        """(role, text) pairs in order; text is as given (unsanitised), role in user/model/system."""
        return [(role, text) for role, text, _ in self._transcript]

    def to_markdown(self) -> str:
        """The conversation as Markdown, sanitised so the file is safe to print in a terminal; a reply's
        note (why it ended or was replaced) follows it in italics, as the pane shows it dimmed."""
        parts = []
        for role, text, note in self._transcript:
            body = safe_text(text, keep_newlines=True)
            if role == "system":
                parts.append(f"> {body}".replace("\n", "\n> "))
            else:
                parts.append(f"**{_PREFIX[role]}:** {body}" + (f" *[{safe_text(note)}]*" if note else ""))
        return "\n\n".join(parts) + ("\n" if parts else "")

    # ---- internals -------------------------------------------------------------------------

    def _add_turn(self, role: str, text: str) -> ChatTurn:
        turn = ChatTurn(role, text)
        log = self.query_one(VerticalScroll)
        log.mount(turn)
        self._transcript.append(turn.entry)
        turns = list(log.query(ChatTurn))
        if len(turns) > self.max_turns:  # bounded: drop the oldest widgets (not the open reply)
            for old in turns[: len(turns) - self.max_turns]:
                if old is not self._reply:
                    old.remove()
        if len(self._transcript) > 5 * self.max_turns:
            del self._transcript[: len(self._transcript) - 5 * self.max_turns]
        self._scroll_end()
        return turn

    def _scroll_end(self) -> None:
        self.query_one(VerticalScroll).scroll_end(animate=False, immediate=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value
        event.input.value = ""
        if not text.strip():
            return
        self.add_user(text)
        self.post_message(self.Submitted(self, text))
