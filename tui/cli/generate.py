"""`attnlab sample` and `attnlab chat`: text from a save, streamed to the terminal."""

import sys

from core.tasks import chats
from core.tasks.lm import PromptTooLong, chat_prompt, unsure_for
from core.text import safe_label, safe_text
from core.trainer import load_model
from tui.cli.common import UserError
from tui.cli.mix import add_with, mixed


def register(sub):
    for name, helptext, func in (("sample", "stream a sample from a save", cmd_sample),
                                 ("chat", "chat with a save in this terminal", cmd_chat)):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("name")
        s.add_argument("--tag", default="best")
        if name == "sample":
            s.add_argument("--prompt", required=True)
            s.add_argument("--show-probs", action="store_true",
                           help="list each generated character with the model's top-5 next characters")
        s.add_argument("--temperature", type=float)
        s.add_argument("--top-k", type=int)
        s.add_argument("--top-p", type=float)
        s.add_argument("--max-new", type=int)
        s.add_argument("--seed", type=int)
        if name == "chat":
            s.add_argument("--unsure-below", type=float, metavar="P", help=UNSURE_HELP)
            s.add_argument("--unsure-reply-below", type=float, metavar="P", help=UNSURE_REPLY_HELP)
        add_with(s)
        s.set_defaults(func=func)


UNSURE_HELP = ("answer a question (a message ending in ?) \"I don't know that yet.\" when the model's likeliest "
               "character at one of its reply's first 4 is less likely than P (0 = off; default: the save's "
               "sample.unsure_below)")
UNSURE_REPLY_HELP = ("the same when its likeliest character anywhere in the reply is less likely than P: a fact "
                     "never told is answered around a made-up value (0 = off; default: the save's "
                     "sample.unsure_reply_below)")
MIN_TEMPERATURE = 0.01  # below this (but above 0, which is greedy) logits / T overflow float32
MAX_NEW = 100_000


def check_sampling(args):
    """The sampling flags, each checked where it is read; a bad one is refused naming the flag."""
    t = args.temperature
    if t is not None and not (t == 0 or MIN_TEMPERATURE <= t <= 100):  # NaN fails every comparison
        raise UserError(f"--temperature {t}: use 0 (always the likeliest character) or a number "
                        f"from {MIN_TEMPERATURE} to 100, e.g. 0.8")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UserError(f"--top-p {args.top_p}: use a probability in (0, 1], e.g. 0.9 (1 = off)")
    if args.top_k is not None and args.top_k < 0:
        raise UserError(f"--top-k {args.top_k}: use 0 (off) or a positive count, e.g. 20")
    if args.max_new is not None and not 1 <= args.max_new <= MAX_NEW:
        raise UserError(f"--max-new {args.max_new}: use a count from 1 to {MAX_NEW}")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise UserError(f"--seed {args.seed}: use a whole number from 0 to 2**63-1, e.g. 1")
    check_unsure(getattr(args, "unsure_below", None))
    check_unsure(getattr(args, "unsure_reply_below", None), "--unsure-reply-below")


def check_unsure(p, flag="--unsure-below"):
    if p is not None and not 0 <= p < 1:  # NaN fails both
        raise UserError(f"{flag} {p}: use a probability in [0, 1), e.g. 0.3 (0 = off)")



def sampling(args, cfg):
    s = cfg.sample
    return dict(temperature=s.temperature if args.temperature is None else args.temperature,
                top_k=s.top_k if args.top_k is None else args.top_k,
                top_p=s.top_p if args.top_p is None else args.top_p,
                max_new_tokens=s.max_new_tokens if args.max_new is None else args.max_new,
                seed=s.seed if args.seed is None else args.seed)


def cmd_sample(args):
    """Each task's own output: a reversal model's reading of the prompt; an LM's continuation."""
    from core.sample import stream_text
    check_sampling(args)
    model, tok, cfg, _ = load_model(args.name, args.tag)
    model, labels = mixed(model, tok, cfg, f"{args.name}:{args.tag}", args.mix, args.tag)
    if cfg.task == "reversal":
        return sample_reversal(args, model, tok, cfg)
    if len(labels) > 1:  # on stderr: stdout is the sample itself
        print(f"{len(labels)} saves write together: {', '.join(labels)}", file=sys.stderr)
    unseen = tok.unknown_chars(args.prompt)
    if unseen:
        raise UserError(f"--prompt has {len(unseen)} character(s) this model never saw "
                        f"({', '.join(repr(c) for c in unseen[:10])}); leave them out")
    if args.show_probs:
        return show_probs(stream_text(model, tok, args.prompt, stop=(), topk=TOPK, **sampling(args, cfg)))
    for ch in stream_text(model, tok, args.prompt, stop=(), **sampling(args, cfg)):
        sys.stdout.write(safe_text(ch, keep_newlines=True))  # a newline is a line break, not '\x0a'
        sys.stdout.flush()
    print()
    return 0


def sample_reversal(args, model, tok, cfg):
    """A reversal model is an encoder: it reads the whole prompt at once and prints its reversal."""
    from core.tasks.reversal import reverse_with
    out = reverse_with(model, tok, args.prompt, cfg.model.block_size)
    if len(out) != cfg.data.seq_len:
        print(f"(this model was trained on {cfg.data.seq_len}-letter sequences; "
              f"with {len(out)} letters its output may be wrong)", file=sys.stderr)
    print(out)
    return 0


TOPK = 5


def show_probs(items):
    """One line per generated character: the character, then the model's top-5 next characters with
    their probabilities (raw softmax, temperature 1); the whole text again at the end."""
    print(f"   #  char  top-{TOPK} next characters (probability; the sampled one in [ ])")
    text = ""
    for n, (ch, cands) in enumerate(items, 1):
        text += ch
        cells = "  ".join(_cell(c, p, c == ch) for c, p in cands)
        print(f"{n:>4}  {safe_label(ch):<4}  {cells}", flush=True)
    shown = safe_text(text.replace("\n", "⏎"))
    print(f"text: {shown}")
    return 0


def _cell(c, p, picked):
    label = f"{safe_label(c)} {p:.3f}"
    return f"[{label}]" if picked else f" {label} "


def cmd_chat(args):
    from core.sample import stream_text
    check_sampling(args)
    model, tok, cfg, _ = load_model(args.name, args.tag)
    if not chats(cfg.task):
        raise UserError(f"{args.name} is a {cfg.task} model and does not chat; "
                        f"try `attnlab sample {args.name} --prompt PYTHON`")
    model, labels = mixed(model, tok, cfg, f"{args.name}:{args.tag}", args.mix, args.tag)
    opts = sampling(args, cfg)
    unsure = cfg.sample.unsure_below if args.unsure_below is None else args.unsure_below
    anywhere = cfg.sample.unsure_reply_below if args.unsure_reply_below is None else args.unsure_reply_below
    history = []
    if len(labels) > 1:
        print(f"{len(labels)} saves answer together: {', '.join(labels)} (each next character's probability "
              f"the mean of theirs; the sampling and don't-know settings are {labels[0]}'s)")
    print("attnlab chat: type a message; /reset starts over, /quit (or Ctrl+D) leaves.")
    while True:
        try:
            msg = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if msg in ("/quit", "/exit"):
            return 0
        if msg == "/reset":
            history = []
            continue
        if not msg:
            continue
        unseen = tok.unknown_chars(msg)
        if unseen:
            print(f"(the model has never seen {', '.join(safe_text(c) for c in unseen)}; they were left out)")
            msg = "".join(c for c in msg if c not in unseen)
        try:
            prompt = chat_prompt(cfg.task, history, msg, cfg.model.block_size)
        except PromptTooLong as e:
            print(f"(not sent: {e})")
            continue
        sys.stdout.write("bot> ")
        reply, rule = "", unsure_for(msg, unsure, anywhere)
        try:
            for ch in stream_text(model, tok, prompt, stop=("\n",), unsure=rule, **opts):
                reply += ch
                sys.stdout.write(safe_text(ch))
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
        print(f"  ({safe_text(rule.note())})" if rule is not None and rule.used else "")
        history.append((msg, reply.strip()))
