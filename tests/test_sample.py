import numpy as np
import pytest

from core.config import ModelConfig
from core.model import Transformer
from core.sample import generate, next_logits, pick_token, stream_text, window_keep
from core.tokenizer import CharTokenizer
from numerics import assert_float32_close, logit_bound


def model(block=12, seed=0, pos="learned", smear=False):
    cfg = ModelConfig(vocab_size=9, block_size=block, n_layer=2, n_head=2, n_embd=16, pos=pos, smear=smear)
    m = Transformer(cfg, rng=np.random.default_rng(seed))
    for p in m.params.values():  # a peaky distribution so samples differ from uniform noise
        p += np.random.default_rng(seed + 1).standard_normal(p.shape).astype(np.float32) * 0.3
    return m


@pytest.mark.parametrize("pos,smear", [("learned", False), ("rope", False), ("rope", True)])
def test_cached_logits_match_uncached_across_window_hops(pos, smear):
    m = model(pos=pos, smear=smear)
    ids = list(np.random.default_rng(1).integers(0, 9, 5))
    s_cache, s_full = {"start": 0, "kv": None}, {"start": 0, "kv": None}
    for step in range(40):  # far past block_size: the window hops several times
        a = next_logits(m, ids, s_cache, use_cache=True)
        b = next_logits(m, ids, s_full, use_cache=False)
        np.testing.assert_allclose(a, b, atol=1e-5)
        assert s_cache["start"] == s_full["start"]
        ids.append(int(np.argmax(a)))
    assert s_cache["start"] > 0  # the window really slid


def test_same_seed_same_text_with_and_without_cache():
    m = model()
    kw = dict(max_new_tokens=60, temperature=1.0, top_k=5, top_p=0.9)
    a = list(generate(m, [1, 2, 3], rng=np.random.default_rng(7), use_cache=True, **kw))
    b = list(generate(m, [1, 2, 3], rng=np.random.default_rng(7), use_cache=False, **kw))
    assert a == b and len(a) == 60
    c = list(generate(m, [1, 2, 3], rng=np.random.default_rng(8), use_cache=True, **kw))
    assert a != c


def test_long_prompt_is_cropped_from_the_left():
    m = model(block=8)
    ids = list(range(1, 9)) * 3  # 24 tokens, window 8
    state = {"start": 0, "kv": None}
    logits = next_logits(m, ids, state)
    assert state["start"] == len(ids) - window_keep(8)
    ref, _ = m.forward(np.array([ids[state["start"]:]]))
    np.testing.assert_allclose(logits, ref[0, -1], atol=1e-5)


def test_pick_token_greedy_top_k_top_p():
    logits = np.log(np.array([0.05, 0.5, 0.3, 0.15]))
    assert pick_token(logits, temperature=0) == 1
    rng = np.random.default_rng(0)
    assert {pick_token(logits, 1.0, top_k=1, rng=rng) for _ in range(50)} == {1}
    assert {pick_token(logits, 1.0, top_p=0.75, rng=rng) for _ in range(300)} == {1, 2}
    assert {pick_token(logits, 1.0, top_k=2, rng=rng) for _ in range(300)} == {1, 2}
    counts = np.bincount([pick_token(logits, 1.0, rng=rng) for _ in range(4000)], minlength=4) / 4000
    np.testing.assert_allclose(counts, [0.05, 0.5, 0.3, 0.15], atol=0.03)


def test_stream_text_stops_at_stop_string_and_can_be_cancelled():
    tok = CharTokenizer.from_text("ab\nxyz")
    m = model()
    m.cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=12, n_layer=2, n_head=2, n_embd=16)
    m = Transformer(m.cfg, rng=np.random.default_rng(0))
    # force the model to always say "b": a big bias on that id in the head
    m.params["wte.w"][tok.encode("b")[0]] += 5 * m.params["ln_f.w"]
    m.params["ln_f.b"][...] = 1.0
    out = "".join(stream_text(m, tok, "a", stop=("bbb",), max_new_tokens=20, temperature=0))
    assert out == ""  # the stop string itself is not yielded
    out = "".join(stream_text(m, tok, "a", stop=("\n",), max_new_tokens=5, temperature=0))
    assert out == "bbbbb"
    calls = []
    out = "".join(stream_text(m, tok, "a", stop=(), max_new_tokens=50, temperature=0,
                              cancel=lambda: len(calls.append(1) or calls) > 3))
    assert out == "bbb"


def test_replies_never_write_unk_even_where_the_model_favours_it():
    """<unk> (id 0) stands for a character outside the vocabulary: a reply never holds it, greedy or
    sampled, though its logits (shown as candidates) still do; generate() itself bans only what it is told."""
    tok = CharTokenizer.from_text("ab\nxyz")
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=12, n_layer=2, n_head=2, n_embd=16)
    m = Transformer(cfg, rng=np.random.default_rng(0))
    m.params["wte.w"][tok.UNK_ID] += 5 * m.params["ln_f.w"]  # the model's favourite next id: <unk>
    m.params["ln_f.b"][...] = 1.0
    ids = tok.encode("a")
    assert next(generate(m, ids, max_new_tokens=1, temperature=0)) == tok.UNK_ID
    for temperature in (0, 0.8, 2.0):
        out = "".join(stream_text(m, tok, "a", stop=(), max_new_tokens=40, temperature=temperature, seed=1))
        assert len(out) == 40 and tok.UNK_TEXT not in out, (temperature, out)
    _, cands = next(iter(stream_text(m, tok, "a", stop=(), max_new_tokens=1, temperature=0, topk=3)))
    assert cands[0][0] == tok.UNK_TEXT  # the model's own distribution, shown as it is
    drawn = list(generate(m, ids, max_new_tokens=30, temperature=1.0, rng=np.random.default_rng(0), banned=(1, 2)))
    assert drawn and not {1, 2} & set(drawn)


def test_empty_prompt_is_an_error():
    with pytest.raises(ValueError):
        next(generate(model(), [], max_new_tokens=1))


@pytest.mark.parametrize("smear", [False, True])
def test_a_new_cache_takes_over_a_dead_ones_buffers_and_refolds_the_weights(smear):
    m = model(pos="rope", smear=smear)
    ids = [1, 2, 3, 4]
    kv = m.new_kv_cache()
    m.forward_step(np.asarray([ids[:-1]]), kv)
    before = m.decode_one(ids[-1], kv)
    buffers = kv["kv"]
    live = m.new_kv_cache()
    assert live["kv"] is not buffers  # a cache in use keeps its own
    del kv, live
    for p in m.params.values():  # the weights change between generations (training went on)
        p *= np.float32(1.1)
    kv = m.new_kv_cache()
    assert kv["kv"] is buffers or kv["kv"].base is buffers.base  # reused, no fresh pages
    m.forward_step(np.asarray([ids[:-1]]), kv)
    after = m.decode_one(ids[-1], kv)
    np.testing.assert_allclose(after, m.forward(np.asarray([ids]))[0][0, -1], atol=1e-5)  # folded afresh
    assert not np.allclose(after, before)


def _scores_made_extreme(m, q_bias):
    """Every layer's attention scores pushed out of exp's comfortable float32 range: every key
    shares a large common part, and q points along it (huge scores) or against it (tiny weights)."""
    C = m.cfg.n_embd
    for i in range(m.cfg.n_layer):
        b = m.params[f"h.{i}.attn.c_attn.b"]
        b[C:2 * C] = abs(q_bias)
        b[:C] = q_bias


# +12: exp overflows; -12: every weight underflows to 0; -6: every weight is a denormal number, and
# the unshifted logits come out finite but off by ~1e-4 (the row sums give it away)
@pytest.mark.parametrize("q_bias", [12.0, -12.0, -6.0])
def test_decoding_redoes_a_step_whose_unshifted_softmax_overflows_or_underflows(q_bias):
    import warnings
    m = model()
    _scores_made_extreme(m, q_bias)
    ids = [1, 2, 3, 4, 5]
    kv = m.new_kv_cache()
    m.forward_step(np.asarray([ids[:-1]]), kv)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the unshifted attempt's overflow stays silent
        logits = m.decode_one(ids[-1], kv)
    assert kv["len"] == len(ids) and np.all(np.isfinite(logits))
    np.testing.assert_allclose(logits, m.forward(np.asarray([ids]))[0][0, -1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("offset", [0.0, 30.0])
def test_decoding_is_exact_when_the_residual_stream_carries_a_large_common_offset(offset):
    # decoding gets LayerNorm's variance as mean(x^2) - mean^2 unless that would cancel precision; both
    # float32 paths (cached decoding and the batch forward) are held to the float32 error bound of the
    # float64 truth, which grows with the offset (tests/numerics.py), not to each other
    m = model(pos="rope")
    m.params["wte.w"] += np.float32(offset)  # every channel of every token shifted alike
    ids = [1, 2, 3, 4, 5, 6]
    kv = m.new_kv_cache()
    m.forward_step(np.asarray([ids[:2]]), kv)
    for j in range(2, len(ids)):
        ref64, bound = logit_bound(m, ids[:j + 1])
        assert_float32_close(m.decode_one(ids[j], kv), ref64, bound, f"decoding, position {j}")
        assert_float32_close(m.forward(np.asarray([ids[:j + 1]]))[0][0, -1], ref64, bound, f"forward, position {j}")


def test_the_float32_bound_catches_a_decoding_error():
    # the bound is loose enough for any kernel yet far below what a real mistake does: decoding the
    # last token at the wrong position (rotary tables one step off) breaks it
    m = model(pos="rope")
    ids = [1, 2, 3, 4, 5, 6]
    kv = m.new_kv_cache()
    m.forward_step(np.asarray([ids[:4]]), kv)
    kv["len"] += 1  # skip a position
    ref64, bound = logit_bound(m, ids[:5])
    with pytest.raises(AssertionError, match="exceeds the float32 bound"):
        assert_float32_close(m.decode_one(ids[4], kv), ref64, bound, "decoding")


class Scripted:
    """A stand-in model that writes `reply`, the likeliest character at each step with probability
    sure[i] (the rest spread over the other characters): the replies' confidence is set exactly."""

    def __init__(self, tok, prompt_len, reply, sure):
        self.tok, self.prompt_len, self.reply, self.sure = tok, prompt_len, reply, sure
        self.cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=64, causal=False)
        self.head_version = 0

    def forward(self, window):  # (1, T) -> (logits (1, T, V), None): only the last row is read
        i = window.shape[1] - self.prompt_len
        p = np.full(self.tok.vocab_size, (1 - self.sure[i]) / (self.tok.vocab_size - 2))
        p[self.tok.UNK_ID] = 0.0
        p[self.tok.encode(self.reply[i])[0]] = self.sure[i]
        logits = np.log(np.maximum(p, 1e-30))
        return np.tile(logits, (1, window.shape[1], 1)), None


def scripted(reply, sure):
    from core.tasks.lm import DONT_KNOW
    tok = CharTokenizer.from_text("Q: x?\nA:" + reply + DONT_KNOW + "Ok")
    return Scripted(tok, len("Q: x?\nA:"), reply, sure), tok, "Q: x?\nA:"


def unsure_at(below):
    from core.sample import Unsure
    from core.tasks.lm import DONT_KNOW
    return Unsure(below, DONT_KNOW)


def test_a_reply_begun_unsurely_is_replaced_by_dont_know():
    m, tok, prompt = scripted(" September comes after May.\n", [1.0, 0.17, 0.8, 0.9] + [0.99] * 24)
    u = unsure_at(0.3)
    out = "".join(stream_text(m, tok, prompt, temperature=0.0, unknown="unk", unsure=u))
    assert out == " I don't know that yet."  # the space the model began with is kept
    assert u.used and u.opening == " Sep"
    assert u.top == pytest.approx(0.17, rel=1e-9)
    # below its lowest probability the model's own reply stands, as it does with no Unsure at all
    plain = "".join(stream_text(m, tok, prompt, temperature=0.0, unknown="unk"))
    assert plain == " September comes after May."
    u = unsure_at(0.17 * 0.99)
    assert "".join(stream_text(m, tok, prompt, temperature=0.0, unknown="unk", unsure=u)) == plain
    assert not u.used and u.opening == " Sep"
    assert "".join(stream_text(m, tok, prompt, temperature=0.0, unknown="unk", unsure=unsure_at(0.0))) == plain


def test_a_model_already_saying_dont_know_is_left_to_say_it():
    from core.tasks.lm import DONT_KNOW
    m, tok, prompt = scripted(f" {DONT_KNOW}\n", [1.0, 0.2, 0.9, 0.9] + [0.99] * 30)
    u = unsure_at(0.5)
    assert "".join(stream_text(m, tok, prompt, temperature=0.0, unknown="unk", unsure=u)) == f" {DONT_KNOW}"
    assert not u.used and u.top == pytest.approx(0.2)


def test_only_the_opening_is_judged():
    # a doubt after the first four characters (the value being copied, say) never replaces the reply
    m, tok, prompt = scripted(" Your name is Bruno.\n", [1.0, 0.95, 0.9, 0.9, 0.9, 0.05] + [0.99] * 20)
    u = unsure_at(0.5)
    assert "".join(stream_text(m, tok, prompt, temperature=0.0, unknown="unk", unsure=u)) == " Your name is Bruno."
    assert not u.used and u.top == pytest.approx(0.9)


def test_a_reply_shorter_than_its_opening_is_judged_too():
    for sure, want in ((0.2, " I don't know that yet."), (0.8, " Ok")):
        m, tok, prompt = scripted(" Ok\n", [1.0, sure, 0.9, 0.9])
        u = unsure_at(0.5)
        assert "".join(stream_text(m, tok, prompt, temperature=0.0, unknown="unk", unsure=u)) == want
        assert u.used == (sure < 0.5) and u.opening == " Ok"


def test_an_unsure_stream_with_candidates_keeps_the_opening_for_the_view():
    m, tok, prompt = scripted(" September.\n", [1.0, 0.17, 0.8, 0.9] + [0.99] * 8)
    u = unsure_at(0.3)
    items = list(stream_text(m, tok, prompt, temperature=0.0, unknown="unk", topk=3, unsure=u))
    assert "".join(c for c, _ in items) == " I don't know that yet." and all(c == [] for _, c in items)
    assert len(u.cands) == len(u.opening) == 4
    assert u.cands[1][0] == ("S", pytest.approx(0.17))  # what the model began with, and how sure it was


def test_sampling_judges_the_models_likeliest_character_not_the_one_drawn():
    m, tok, prompt = scripted(" September.\n", [1.0, 0.17, 0.8, 0.9] + [0.99] * 8)
    for seed in range(5):  # whichever character a draw picks at 17%, the model's best was only 17% sure
        u = unsure_at(0.3)
        out = "".join(stream_text(m, tok, prompt, temperature=1.0, seed=seed, max_new_tokens=20, unknown="unk",
                                  unsure=u))
        assert out == " I don't know that yet." and u.top == pytest.approx(0.17)


def test_a_reply_unsure_anywhere_is_replaced_when_asked_to_judge_it_all():
    # asked about a fact it was never told, the model writes a sure frame around a made-up value
    from core.sample import Unsure
    from core.tasks.lm import DONT_KNOW
    sure = [1.0] + [0.99] * 13 + [0.08, 0.3, 0.4, 0.5, 0.9, 0.9]  # " Your name is " then "Tsen.", the newline
    m, tok, prompt = scripted(" Your name is Tsen.\n", sure)
    for anywhere, want in ((0.1, f" {DONT_KNOW}"), (0.08 * 0.99, " Your name is Tsen."), (0.0, " Your name is Tsen.")):
        u = Unsure(0.4, DONT_KNOW, anywhere=anywhere)
        items = list(stream_text(m, tok, prompt, temperature=0.0, unknown="unk", topk=3, unsure=u))
        assert "".join(c for c, _ in items) == want
        assert u.used == (want != " Your name is Tsen.")
        if anywhere > 0:
            assert u.low == pytest.approx(0.08) and u.top == pytest.approx(0.99)
    assert u.why == "" and u.opening == " You"  # off: only the opening was judged
    u = Unsure(0.4, DONT_KNOW, anywhere=0.1)
    list(stream_text(m, tok, prompt, temperature=0.0, unknown="unk", topk=3, unsure=u))
    # what it would have said, whole, for the next-character view, and the note says which rule
    assert u.why == "reply" and u.opening == " Your name is Tsen." and len(u.cands) == len(u.opening)
    assert u.cands[14][0] == ("T", pytest.approx(0.08))
    assert u.note().startswith("unsure of its answer: its likeliest reply 'Your name is Tsen.' was 8% sure at worst, "
                               "under sample.unsure_reply_below 10%")


def test_the_opening_rule_comes_first_and_a_sure_reply_is_shown_whole():
    from core.sample import Unsure
    from core.tasks.lm import DONT_KNOW
    m, tok, prompt = scripted(" September comes after May.\n", [1.0, 0.17, 0.8, 0.9] + [0.05] * 24)
    u = Unsure(0.3, DONT_KNOW, anywhere=0.1)
    assert "".join(stream_text(m, tok, prompt, temperature=0.0, unknown="unk", unsure=u)) == f" {DONT_KNOW}"
    assert u.why == "start" and u.opening == " Sep" and u.note().startswith("unsure how to answer")
    # a model already saying it does not know is left alone, however unsure of the rest
    m, tok, prompt = scripted(f" {DONT_KNOW}\n", [1.0, 0.9, 0.9, 0.9] + [0.05] * 30)
    u = Unsure(0.3, DONT_KNOW, anywhere=0.1)
    assert "".join(stream_text(m, tok, prompt, temperature=0.0, unknown="unk", unsure=u)) == f" {DONT_KNOW}"
    assert not u.used
    # sure throughout: the same characters as with no rule, also when the reply ends without a newline
    m, tok, prompt = scripted(" Your name is Bruno.\n", [0.9] * 21)
    plain = "".join(stream_text(m, tok, prompt, temperature=0.0, unknown="unk"))
    u = Unsure(0.3, DONT_KNOW, anywhere=0.5)
    assert "".join(stream_text(m, tok, prompt, temperature=0.0, unknown="unk", unsure=u)) == plain
    u = Unsure(0.3, DONT_KNOW, anywhere=0.5)
    assert "".join(stream_text(m, tok, prompt, temperature=0.0, unknown="unk", max_new_tokens=8, unsure=u)) == plain[:8]
    assert not u.used and u.low == pytest.approx(0.9)
    # the end of line is not part of the reply: however unsure the model was of ending there
    m, tok, prompt = scripted(" Your name is Bruno.\n", [0.9] * 20 + [0.05])
    u = Unsure(0.3, DONT_KNOW, anywhere=0.5)
    assert "".join(stream_text(m, tok, prompt, temperature=0.0, unknown="unk", unsure=u)) == plain
    assert not u.used and u.low == pytest.approx(0.9)


def test_a_long_reply_takes_its_room_from_the_oldest_whole_turns(monkeypatch):
    """A chat prompt (core.tasks.lm.Prompt) keeps every turn that fits, leaving REPLY_ROOM free; when the
    reply fills the window, the prompt is rebuilt with its oldest whole turns dropped (each context the
    model is given begins at a turn), where a plain prompt's window hops to its last half, mid-turn. The
    reply stays as long as asked for; cancelling still ends it."""
    import core.sample as sample
    from core.tasks.lm import REPLY_ROOM, build_prompt
    history = [(f"q{i}", "abc" * 2) for i in range(8)]
    tok = CharTokenizer.from_text("".join(f"Q: {q}\nA: {a}\n" for q, a in history) + "Q: end?\n")
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16, pos="rope")
    m = Transformer(cfg, rng=np.random.default_rng(0))
    prompt = build_prompt(history, "end?", 64)
    assert 64 - REPLY_ROOM - 12 < len(prompt) <= 64 - REPLY_ROOM  # every whole turn that fits (12 chars each)
    seen = []
    real = sample.generate
    monkeypatch.setattr(sample, "generate", lambda mod, ids, **kw: seen.append(tok.decode(ids)) or real(mod, ids, **kw))
    out = "".join(stream_text(m, tok, prompt, stop=(), max_new_tokens=50, temperature=0))
    assert len(out) == 50 and seen[0] == prompt and len(seen) >= 3
    turns = [c.count("Q: ") for c in seen]
    assert turns == sorted(turns, reverse=True) and turns[1] > 1  # the oldest turns go first, a few at a time
    for context in seen[1:]:  # rebuilt: whole turns, then the question, then the reply so far
        assert context.startswith("Q: ") and "Q: end?\nA:" in context and len(context) < 64
        assert out.startswith(context.split("Q: end?\nA:")[1])
    seen.clear()
    plain = "".join(stream_text(m, tok, str(prompt), stop=(), max_new_tokens=50, temperature=0))
    assert len(plain) == 50 and seen == [str(prompt)]  # one generate(): its window hops inside
    calls = []
    cut = "".join(stream_text(m, tok, prompt, stop=(), max_new_tokens=50, temperature=0,
                              cancel=lambda: len(calls.append(1) or calls) > 30))
    assert len(cut) == 30
