import numpy as np
import pytest
from keras import ops

from img2latex_lib.checkpoints import save_checkpoint
from img2latex_lib.constraints import BalanceConstraint
from img2latex_lib.decoding import (
    LatexProducer,
    StepDecoder,
    beam_search,
    greedy,
)
from img2latex_lib.model import Config, build_model
from img2latex_lib.tokenizer import EOS_ID, PAD_ID, Vocab
from tests.test_model import SMALL, randomized


@pytest.fixture(scope="module")
def model():
    model = build_model(Config(**SMALL), verbose=False)
    rng = np.random.default_rng(3)
    model.set_weights([randomized(w, rng) for w in model.weights])
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((4, 32, 64, 1)).astype("float32")


def test_incremental_steps_match_the_teacher_forced_model(model, images):
    decoder = StepDecoder(model)
    ids = greedy(decoder, images[:1], max_len=12)[0]
    tokens = np.array([[1] + ids], dtype="int32")
    logits = np.asarray(model((images[:1], tokens), training=False))
    # the full-sequence argmax reproduces every greedy choice
    assert logits[0, :len(ids)].argmax(-1).tolist() == ids


def test_beam_of_one_equals_greedy(model, images):
    decoder = StepDecoder(model)
    greedy_ids = greedy(decoder, images, max_len=15)
    beam_ids = [nbest[0].ids for nbest in beam_search(decoder, images, 1, max_len=15)]
    assert beam_ids == greedy_ids


def test_compiled_greedy_loop_equals_the_stepwise_loop(model, images):
    decoder = StepDecoder(model)
    for max_len in (3, 15):  # 3: every row is cut at the length limit
        compiled = greedy(decoder, images, max_len=max_len)
        stepwise, _ = greedy(decoder, images, max_len=max_len, return_attention=True)
        assert compiled == stepwise
        assert all(len(ids) <= max_len for ids in compiled)
    assert any(len(ids) == 3 for ids in greedy(decoder, images, max_len=3))


def test_beam_search_returns_sorted_distinct_hypotheses(model, images):
    decoder = StepDecoder(model)
    nbest = beam_search(decoder, images[:2], beam_size=4, max_len=10)
    for hypotheses in nbest:
        assert 1 <= len(hypotheses) <= 4
        scores = [h.score for h in hypotheses]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.ids) for h in hypotheses}) == len(hypotheses)
        assert all(len(h.ids) <= 10 for h in hypotheses)
        assert all(2 not in h.ids for h in hypotheses)  # <eos> never inside


def test_beam_finds_at_least_the_greedy_log_probability(model, images):
    decoder = StepDecoder(model)
    beam = beam_search(decoder, images, 5, max_len=15, length_penalty=0.0)
    greedy_best = beam_search(decoder, images, 1, max_len=15, length_penalty=0.0)
    for wide, narrow in zip(beam, greedy_best, strict=True):
        assert wide[0].log_prob >= narrow[0].log_prob - 1e-4


def test_sampling_is_reproducible_with_a_seed(model, images):
    decoder = StepDecoder(model)
    first = greedy(decoder, images, 10, temperature=1.5, rng=np.random.default_rng(7))
    again = greedy(decoder, images, 10, temperature=1.5, rng=np.random.default_rng(7))
    assert first == again


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    vocab = Vocab.build(["a b c d e f g h i j k l m n o p"])
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model", model, vocab)


BALANCE_TOKENS = ["{", "}", r"\left(", r"\right)", r"\begin{array}", r"\end{array}",
                  r"\begin{matrix}", r"\end{matrix}", "x", "+", "^", r"\leftarrow",
                  r"\rightarrow", "1"]
CLOSER = {"{": "}", r"\left(": r"\right)", r"\begin{array}": r"\end{array}",
          r"\begin{matrix}": r"\end{matrix}"}


def _balance(tokens: list[str]) -> tuple[bool, bool]:
    """(every closer closed the innermost open thing, everything closed at the end)."""
    stack: list[str] = []
    for token in tokens:
        if token in CLOSER:
            stack.append(CLOSER[token])
        elif token in CLOSER.values():
            if not stack or stack.pop() != token:
                return False, False
    return True, not stack


def _opened(constraint: BalanceConstraint, vocab: Vocab, prefixes: list[list[str]], xp=np):
    """The constraint's state after each prefix (rows padded with <pad>, which changes nothing)."""
    opened = constraint.nothing_open(len(prefixes), xp=xp)
    for step in range(max(map(len, prefixes))):
        tokens = np.array([vocab.token_to_id[p[step]] if step < len(p) else PAD_ID
                           for p in prefixes], "int32")
        opened = constraint.update(opened, tokens, xp=xp)
    return np.asarray(opened)


def test_balance_constraint_allows_only_the_innermost_closer_and_no_end_while_open():
    vocab = Vocab.build([" ".join(BALANCE_TOKENS)], min_freq=1)
    constraint = BalanceConstraint(vocab)
    ids = vocab.token_to_id
    prefixes = [[], ["{"], [r"\left(", r"\left("], [r"\begin{array}"], ["{", r"\left("],
                [r"\begin{array}", "{", "}"], [r"\left(", r"\begin{matrix}"],
                ["{", "}", r"\left(", r"\right)"]]
    innermost = [None, "}", r"\right)", r"\end{array}", r"\right)", r"\end{array}",
                 r"\end{matrix}", None]
    opened = _opened(constraint, vocab, prefixes)
    assert (opened == _opened(constraint, vocab, prefixes, xp=ops)).all()  # compiled-loop twin
    assert opened[:, 0].tolist() == [0, 1, 2, 1, 2, 1, 2, 0]  # how many are open
    closers = {token: ids[token] for token in CLOSER.values()}
    logits = np.zeros((len(prefixes), len(vocab)), "float32")
    logits[:, ids["x"]] = 1.0  # the model would write on
    blocked = np.asarray(constraint.penalty(opened, logits, xp=ops)) < 0
    assert (blocked == (constraint.penalty(opened, logits, xp=np) < 0)).all()
    for row, closer in enumerate(innermost):
        allowed = [token for token, i in closers.items() if not blocked[row, i]]
        assert allowed == ([closer] if closer else [])
        assert blocked[row, EOS_ID] == (closer is not None)
    assert not blocked[:, [ids[t] for t in ("{", "x", r"\leftarrow", r"\rightarrow")]].any()
    logits[:, EOS_ID] = 2.0  # the model would end: where something is open, it must close
    blocked = np.asarray(constraint.penalty(opened, logits)) < 0
    for row, closer in enumerate(innermost):
        assert np.flatnonzero(~blocked[row]).tolist() == [ids[closer] if closer else EOS_ID] or (
            closer is None and not blocked[row, EOS_ID])
    shallow = BalanceConstraint(vocab, depth=2)  # at the depth limit nothing more may open
    full = _opened(shallow, vocab, [["{", r"\left("]])
    blocked = shallow.penalty(full, np.zeros((1, len(vocab)), "float32"), xp=np) < 0
    assert blocked[0, [ids[t] for t in CLOSER]].all()
    assert not blocked[0, [ids[t] for t in ("x", r"\right)")]].any()


def _blocked_after(constraint: BalanceConstraint, vocab: Vocab,
                   prefixes: list[list[str]]) -> np.ndarray:
    """Which tokens the constraint rules out after each prefix [B, V], checked to be the same
    in numpy and in the compiled loop's ops."""
    opened = _opened(constraint, vocab, prefixes)
    assert (opened == _opened(constraint, vocab, prefixes, xp=ops)).all()
    logits = np.zeros((len(prefixes), len(vocab)), "float32")
    blocked = constraint.penalty(opened, logits, xp=np) < 0
    assert (blocked == (np.asarray(constraint.penalty(opened, logits, xp=ops)) < 0)).all()
    return blocked


def test_array_rows_get_no_more_tabs_than_their_spec_has_columns():
    vocab = Vocab.build([" ".join(BALANCE_TOKENS + ["&", "\\\\", "c", "l", "p", "3"])],
                        min_freq=1)
    constraint = BalanceConstraint(vocab)
    two = [r"\begin{array}", "{", "c", "l", "}", "x"]
    cases = [  # (prefix, & allowed next)
        (two, True),
        (two + ["&"], False),  # two columns: one & a row
        (two + ["&", "x", "\\\\", "x"], True),  # a new row
        (two + ["&", "x", "\\\\", "x", "&", "x"], False),
        ([r"\begin{array}", "{", "p", "{", "3", "c", "}", "c", "}", "x", "&"], False),  # p{3c}: 1
        ([r"\begin{array}", "{", "c", "}", *two, "&", "x", r"\end{array}"], False),  # outer: 1
        ([r"\begin{array}", "{", "c", "}", *two], True),  # the inner array's own count
        ([r"\begin{matrix}", "x", "&", "x", "&"], True),  # no spec, no limit
        ([r"\begin{array}", "x", "&", "&"], True),
    ]
    blocked = _blocked_after(constraint, vocab, [prefix for prefix, _ in cases])
    assert [not b for b in blocked[:, vocab.token_to_id["&"]]] == [ok for _, ok in cases]
    assert not blocked[:, vocab.token_to_id["x"]].any()


def test_tabs_and_row_ends_come_only_directly_inside_an_environment():
    vocab = Vocab.build([" ".join(BALANCE_TOKENS + ["&", "\\\\", "c"])], min_freq=1)
    constraint = BalanceConstraint(vocab)
    array = [r"\begin{array}", "{", "c", "c", "}", "x"]
    cases = [  # (prefix, & and \\ allowed next)
        (array, True),
        ([r"\begin{matrix}", "x"], True),
        (["x"], False),  # the formula's top level
        (array + ["{", "x"], False),  # a cell's group would span the cell's end
        (array + [r"\left(", "x"], False),
        (array + ["{", "x", "}"], True),
        (array + ["{", r"\begin{matrix}", "x"], True),  # a nested environment's own rows
    ]
    blocked = _blocked_after(constraint, vocab, [prefix for prefix, _ in cases])
    for token in ("&", "\\\\"):
        assert [not b for b in blocked[:, vocab.token_to_id[token]]] == [ok for _, ok in cases]


def test_an_array_spec_holds_column_letters_and_the_groups_they_take():
    vocab = Vocab.build([" ".join(BALANCE_TOKENS + ["c", "p", "|", "@", "*", "3"])], min_freq=1)
    constraint = BalanceConstraint(vocab)
    spec = [r"\begin{array}", "{"]
    cases = [  # (prefix, which of the shown may come next)
        (spec, "c p | * }"),
        (spec + ["c", "|"], "c p | * }"),  # a { here would be { c c { c } (seen in predictions)
        (spec + ["p"], "{"),  # p takes its width
        (spec + ["p", "{", "3"], "c p | * { } x"),  # inside the width: anything
        (spec + ["p", "{", "3", "c", "}"], "c p | * }"),
        (spec + ["*", "{", "3", "}"], "{"),  # * takes two groups
        (spec + ["*", "{", "3", "}", "{", "c", "}"], "c p | * }"),
        (spec + ["c", "}"], "c p | * { x"),  # the body (no } : the array is open)
        ([r"\begin{matrix}", "{"], "c p | * { } x"),  # no spec
    ]
    shown = ["c", "p", "|", "*", "{", "}", "x"]
    blocked = _blocked_after(constraint, vocab, [prefix for prefix, _ in cases])
    allowed = [" ".join(t for t in shown if not blocked[row, vocab.token_to_id[t]])
               for row in range(len(cases))]
    assert allowed == [ok for _, ok in cases]


def test_an_atom_gets_one_superscript_and_one_subscript():
    vocab = Vocab.build([" ".join(BALANCE_TOKENS + ["_", "'", "2", "y", r"\frac"])], min_freq=1)
    constraint = BalanceConstraint(vocab)
    cases = [  # (prefix, which of ^ _ ' may come next)
        (["x"], "^_'"),
        (["x", "^", "{", "2", "}"], "_"),  # no second superscript, no prime after it
        (["x", "_", "{", "1", "}"], "^'"),
        (["x", "_", "{", "1", "}", "^", "2"], ""),
        (["x", "^"], ""),  # waiting for the argument: no script of the script's
        (["x", "^", "2", "y"], "^_'"),  # a new atom
        (["{", "x", "^", "2", "}"], "^_'"),  # a group is an atom of its own
        (["{", "x", "^", "2"], "_"),  # … and inside it the rule holds
        (["x", "'"], "^_'"),  # x'^2 and x'' compile
        (["x", "^", "2", r"\left(", "x", r"\right)"], "^_'"),
        ([r"\frac", "{", "1", "}", "{", "y", "}"], "^_'"),
        (["x", "^", "{", "2", "}", "+"], "^_'"),
    ]
    blocked = _blocked_after(constraint, vocab, [prefix for prefix, _ in cases])
    allowed = ["".join(t for t in "^_'" if not blocked[row, vocab.token_to_id[t]])
               for row in range(len(cases))]
    assert allowed == [ok for _, ok in cases]


def test_every_decoding_keeps_formulas_balanced_under_the_constraint():
    vocab = Vocab.build([" ".join(BALANCE_TOKENS)], min_freq=1)
    model = build_model(Config(**{**SMALL, "vocab_size": len(vocab)}), verbose=False)
    rng = np.random.default_rng(12)
    model.set_weights([randomized(w, rng) for w in model.weights])
    images = rng.random((8, 32, 64, 1)).astype("float32")
    max_len = 30

    def decodings(decoder):
        def words(rows):
            return [[vocab.id_to_token[i] for i in ids] for ids in rows]

        compiled = words(greedy(decoder, images, max_len))
        assert compiled == words(greedy(decoder, images, max_len, return_attention=True)[0])
        sampled = words(greedy(decoder, images, max_len, temperature=3.0,
                               rng=np.random.default_rng(0)))
        beams = [t for nbest in beam_search(decoder, images, 3, max_len)
                 for t in words(h.ids for h in nbest)]
        return compiled + sampled + beams

    def broken(outputs):  # not closed in order, or left open (at the token limit too)
        return [t for t in outputs if _balance(t) != (True, True)]

    unconstrained = decodings(StepDecoder(model))
    assert len(broken(unconstrained)) > 8  # the test has something to fix
    assert any(len(t) == max_len for t in broken(unconstrained))  # … at the token limit too
    assert broken(decodings(StepDecoder(model, BalanceConstraint(vocab)))) == []


def test_what_is_open_closes_before_the_token_limit_and_scripts_get_their_argument():
    vocab = Vocab.build([" ".join(BALANCE_TOKENS + ["_"])], min_freq=1)
    constraint = BalanceConstraint(vocab)
    ids = vocab.token_to_id
    cases = [  # (prefix, tokens left before <eos> is forced, which of the shown may come next)
        (["{", "x"], None, ["{", "}", "x", "^"]),  # no <eos> while something is open
        (["{", "x"], 3, ["{", "}", "x", "^"]),  # { needs its } and the outer }: 3 fit
        (["{", "x"], 2, ["}", "x"]),  # no room to open or to start a script
        (["{", "x"], 1, ["}"]),  # the room left is the closer's
        ([r"\left(", "{", "x"], 2, ["}"]),  # … the innermost first
        (["x"], 1, ["x", "<eos>"]),
        (["{", "x", "^"], None, ["{", "x"]),  # the script's argument before any end
        (["x", "_"], 3, ["{", "x"]),
    ]
    shown = ["{", "}", "x", "^", "<eos>"]
    opened = _opened(constraint, vocab, [prefix for prefix, _, _ in cases])
    for row, (_, room, allowed) in enumerate(cases):
        logits = np.zeros((1, len(vocab)), "float32")
        logits[0, ids["x"]] = 1.0  # the model would write on
        blocked = constraint.penalty(opened[row:row + 1], logits, xp=np, room=room)[0] < 0
        compiled = np.asarray(constraint.penalty(ops.convert_to_tensor(opened[row:row + 1]),
                                                 logits, room=room))[0] < 0
        assert (blocked == compiled).all()
        assert [t for t in shown if not blocked[ids[t]]] == allowed



def test_spec_tokens_with_brace_groups_come_only_where_the_groups_fit():
    vocab = Vocab.build([" ".join(BALANCE_TOKENS + ["c", "p", "*", "3"])], min_freq=1)
    spec = [r"\begin{array}", "{"]  # two open: the array and its spec's braces
    cases = [  # (depth, room, which of c p * may come next)
        (32, None, ["c", "p", "*"]),
        (2, None, ["c"]),  # at the depth limit p's group could not open (it used to, past it)
        (32, 5, ["c", "p"]),  # p { } } \end{array}: 5 tokens; * takes two groups: 7
        (32, 4, ["c"]),
    ]
    shown = ["c", "p", "*"]
    for depth, room, allowed in cases:
        constraint = BalanceConstraint(vocab, depth=depth)
        opened = _opened(constraint, vocab, [spec])
        logits = np.zeros((1, len(vocab)), "float32")
        blocked = constraint.penalty(opened, logits, xp=np, room=room)[0] < 0
        compiled = np.asarray(constraint.penalty(ops.convert_to_tensor(opened), logits,
                                                 room=room))[0] < 0
        assert (blocked == compiled).all()
        assert [t for t in shown if not blocked[vocab.token_to_id[t]]] == allowed

def test_producer_batch_matches_one_by_one_in_order(checkpoint, images):
    producer = LatexProducer(checkpoint)
    pictures = [np.uint8(255 * img[:, : 32 + 16 * i, 0]) for i, img in enumerate(images)]
    together = producer.predict(pictures, batch_size=3)
    assert together == [producer.predict(p) for p in pictures]
    assert isinstance(producer.predict(pictures[0], beam_size=3), str)
    nbest = producer.nbest(pictures[0], beam_size=3)
    assert nbest[0][0] == producer.predict(pictures[0], beam_size=3)


def test_producer_attention_maps(checkpoint, images):
    tokens, maps, model_input = LatexProducer(checkpoint).attention(
        np.uint8(255 * images[0, :, :, 0]))
    assert maps.shape[0] == len(tokens)
    assert maps.shape[1] == 32 // 8
    np.testing.assert_allclose(maps.reshape(len(tokens), -1).sum(-1), 1.0, atol=1e-4)
    assert model_input.shape[0] == 32


def test_render_returns_the_input_above_the_rendered_prediction(checkpoint, images):
    latex, figure = LatexProducer(checkpoint).predict(np.uint8(255 * images[0, :, :, 0]),
                                                      render=True)
    assert isinstance(latex, str)
    assert len(figure.axes) == 2
    assert figure.axes[0].get_title(loc="left") == "input"
