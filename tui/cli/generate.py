"""`attnlab sample` and `attnlab chat`: text from a save, streamed to the terminal."""

import sys

from core.tasks.lm import PromptTooLong, chat_prompt
from core.text import safe_text
from core.trainer import load_model
from tui.cli.common import UserError


def register(sub):
    for name, helptext, func in (("sample", "stream a sample from a save", cmd_sample),
                                 ("chat", "chat with a save in this terminal", cmd_chat)):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("name")
        s.add_argument("--tag", default="best")
        if name == "sample":
            s.add_argument("--prompt", required=True)
        s.add_argument("--temperature", type=float)
        s.add_argument("--top-k", type=int)
        s.add_argument("--top-p", type=float)
        s.add_argument("--max-new", type=int)
        s.add_argument("--seed", type=int)
        s.set_defaults(func=func)


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
    model, tok, cfg, _ = load_model(args.name, args.tag)
    if cfg.task == "reversal":
        return sample_reversal(args, model, tok, cfg)
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


def cmd_chat(args):
    from core.sample import stream_text
    model, tok, cfg, _ = load_model(args.name, args.tag)
    if cfg.task == "reversal":
        raise UserError(f"{args.name} is a reversal model: it reverses letters and does not chat; "
                        f"try `attnlab sample {args.name} --prompt PYTHON`")
    opts = sampling(args, cfg)
    history = []
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
        reply = ""
        try:
            for ch in stream_text(model, tok, prompt, stop=("\n",), **opts):
                reply += ch
                sys.stdout.write(safe_text(ch))
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
        print()
        history.append((msg, reply.strip()))
