"""Modal screens: the help screen listing every key, and a yes/no confirmation."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

TABS = ("setup", "train", "attention", "chat", "saves")

INTRO = ("attnlab trains a tiny transformer in this terminal. Pick a task in Setup, press s, and watch the "
         "Attention tab: on the reversal task the map turns into an anti-diagonal as each position learns to "
         "look at its mirror. Q&A, dialogue and chat models can be chatted with while they train.")


# the views of the model's insides, each with its one-line explanation (tui/widgets/explain.py)
VIEWS = (("Attention map", "map-reversal"), ("Attention map, Q&A and dialogue", "map-causal"),
         ("Head-score chart", "scores"), ("Head ablation", "ablation"), ("Next-character view", "nextchar"))


def help_text(groups: list[tuple[str, list[tuple[str, str]]]]) -> Text:
    from tui.widgets.explain import README_SECTION, TEXTS

    text = Text(INTRO + "\n", no_wrap=False)
    for title, rows in groups:
        text.append(f"\n{title}\n", style="bold")
        for key, desc in rows:
            text.append(f"  {key:<17} ", style="bold cyan")
            text.append(f"{desc}\n")
    text.append("\nWhat am I looking at?", style="bold")
    text.append(f"  (a text capture of each view: {README_SECTION}; i hides these lines in the views)\n")
    for title, key in VIEWS:
        text.append(f"  {title}: ", style="bold cyan")
        text.append(f"{TEXTS[key]}\n")
    return text


# the actions offered in the command palette: (title, help, action)
PALETTE = [("Start or resume training", "s", "start"), ("Pause / resume training", "p", "pause"),
           ("Single step", "n", "single_step"), ("Stop training", "S", "stop"),
           ("Save now", "w", "save_now"), ("Help: every key", "?", "help"),
           *[(f"Show the {t} tab", str(i + 1), f"tab('{t}')") for i, t in enumerate(TABS)],
           ("Chat: regenerate last reply", "ctrl+r in chat", "forward('chat', '#chat-pane', 'regenerate')"),
           ("Chat: new chat", "ctrl+l in chat", "forward('chat', '#chat-pane', 'new_chat')"),
           ("Chat: export transcript", "ctrl+o in chat", "forward('chat', '#chat-pane', 'export')"),
           ("Chat: stop the reply", "escape in chat", "forward('chat', '#chat-pane', 'stop_reply')"),
           ("Saves: refresh the list", "u in saves", "forward('saves', '#saves-pane', 'refresh')"),
           ("Saves: load selected to chat", "c in saves", "forward('saves', '#saves-pane', 'load_chat')"),
           ("Saves: resume selected run", "r in saves", "forward('saves', '#saves-pane', 'resume')"),
           ("Saves: delete selected run", "d in saves", "forward('saves', '#saves-pane', 'delete')"),
           ("Saves: switch the tag to load (best, last)", "t in saves", "forward('saves', '#saves-pane', 'cycle_tag')"),
           ("Saves: mark the selected run to compare", "m in saves", "forward('saves', '#saves-pane', 'mark')"),
           ("Saves: compare the marked runs", "v in saves", "forward('saves', '#saves-pane', 'compare')"),
           ("Saves: chat with the marked saves together", "x in saves",
            "forward('saves', '#saves-pane', 'chat_marked')"),
           ("Train: end the comparison", "escape in train", "forward('train', '#train-pane', 'end_compare')"),
           ("Loss plot: cycle EMA smoothing", "e on the plot", "forward('train', '#loss-plot', 'cycle_ema')"),
           ("Loss plot: toggle log scale", "l on the plot", "forward('train', '#loss-plot', 'toggle_log')"),
           ("Loss plot: step / time on x", "x on the plot", "forward('train', '#loss-plot', 'toggle_x')"),
           ("Attention: probe the last chat reply", "Last reply button",
            "forward('attention', '#attention-pane', 'probe_last_reply')"),
           ("Attention: mean over heads", "m on the map", "forward('attention', '#attn-map', 'toggle_mean')"),
           ("Attention: layer x head grid", "g on the map", "forward('attention', '#attn-map', 'toggle_grid')"),
           ("Attention: colour scale absolute / per map", "a on the map",
            "forward('attention', '#attn-map', 'toggle_scale')"),
           ("Replay: play / pause the recorded timeline", "space in attention",
            "forward('attention', '#attention-pane', 'play')"),
           ("Replay: first recorded step", "home in attention", "forward('attention', '#attention-pane', 'first')"),
           ("Replay: newest step, follow training (live)", "end in attention",
            "forward('attention', '#attention-pane', 'newest')"),
           ("Head scores: next kind of score", "k in attention",
            "forward('attention', '#attention-pane', 'score_kind')"),
           ("Ablation: switch the map's head off / on", "o in attention",
            "forward('attention', '#attention-pane', 'toggle_off')"),
           ("Ablation: zero / mean", "z in attention", "forward('attention', '#attention-pane', 'ablation_mode')"),
           ("Ablation: measure the task without the heads", "v in attention",
            "forward('attention', '#attention-pane', 'ablate')"),
           ("Explanations: show / hide", "i", "explain"),
           *[(f"Training speed limit: {label}", "L cycles", f"speed_limit({value})")
             for label, value in (("unlimited", "None"), ("1 step/s", "1"), ("5 steps/s", "5"),
                                  ("20 steps/s", "20"))]]


def key_groups(app_bindings) -> list[tuple[str, list[tuple[str, str]]]]:
    """Every key, grouped by where it works, read from the bindings themselves."""
    from tui.screens.attention import AttentionPane
    from tui.screens.chat import ChatView  # here: chat and saves import this module
    from tui.screens.saves import SavesPane
    from tui.widgets import AttentionMap, LossPlot, TimelineBar
    from tui.widgets.nextchar import NextCharView

    def rows(bindings):
        out = []
        for b in bindings:
            b = b if isinstance(b, Binding) else Binding(*b)
            key = b.key_display or ", ".join(k.replace("_", " ") for k in b.key.split(","))
            out.append((key, b.description or b.action))
        return out

    everywhere = rows(app_bindings) + [("f1-f5", "switch tabs, even from a text field"),
                                       ("ctrl+p", "command palette (every action)"), ("ctrl+q", "quit"),
                                       ("tab / shift+tab", "move focus"), ("mouse", "click tabs and buttons")]
    return [("Everywhere", everywhere),
            ("Chat", rows(ChatView.BINDINGS) + [("enter", "send the message")]),
            ("Saves", rows(SavesPane.BINDINGS)),
            ("Loss plot (focused)", rows(LossPlot.BINDINGS)),
            ("Attention map (focused)", rows(AttentionMap.BINDINGS) + [("mouse click", "move the cursor")]),
            ("Attention tab: replay and ablation (not in the probe field)",
             rows(AttentionPane.BINDINGS) + [("enter", "in the probe field: show that text (⏎ = newline)")]),
            ("Timeline bar (focused)", rows(TimelineBar.BINDINGS) + [("mouse", "click or drag to a step")]),
            ("Next-character view in chat (focused)",
             rows(NextCharView.BINDINGS) + [("mouse", "hover or click a character")])]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, groups) -> None:
        super().__init__()
        self.groups = groups

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(help_text(self.groups), id="help-text")


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Text(self.question), id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
