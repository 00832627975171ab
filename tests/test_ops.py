import numpy as np
import pytest

from core import ops
from tests.gradcheck import numeric_grad, rel_error

TOL = 1e-6


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def scalar_of(out, dout):
    return float((out * dout).sum())


def test_linear_backward(rng):
    x = rng.standard_normal((2, 3, 4))
    w = rng.standard_normal((4, 5))
    b = rng.standard_normal(5)
    dout = rng.standard_normal((2, 3, 5))
    out, cache = ops.linear_forward(x, w, b)
    np.testing.assert_allclose(out, x @ w + b)
    dx, dw, db = ops.linear_backward(dout, cache)
    f = lambda: scalar_of(ops.linear_forward(x, w, b)[0], dout)
    assert rel_error(dx, numeric_grad(f, x)) < TOL
    assert rel_error(dw, numeric_grad(f, w)) < TOL
    assert rel_error(db, numeric_grad(f, b)) < TOL


def test_layernorm_forward_values(rng):
    x = rng.standard_normal((3, 8)) * 5 + 2
    out, _ = ops.layernorm_forward(x.copy(), np.ones(8), np.zeros(8))
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(-1), 1, rtol=1e-4)


def test_layernorm_backward(rng):
    x = rng.standard_normal((2, 3, 6))
    w = rng.standard_normal(6)
    b = rng.standard_normal(6)
    dout = rng.standard_normal((2, 3, 6))
    _, cache = ops.layernorm_forward(x, w, b)
    dx, dw, db = ops.layernorm_backward(dout, cache)
    f = lambda: scalar_of(ops.layernorm_forward(x, w, b)[0], dout)
    assert rel_error(dx, numeric_grad(f, x)) < TOL
    assert rel_error(dw, numeric_grad(f, w)) < TOL
    assert rel_error(db, numeric_grad(f, b)) < TOL


@pytest.mark.parametrize("bias, scaled, transposed", [(True, False, False), (True, True, False), (False, False, True)])
def test_layernorm_linear_matches_the_two_ops_and_finite_differences(rng, bias, scaled, transposed):
    x = rng.standard_normal((2, 3, 6)) * 3 + 1
    g, beta = rng.standard_normal(6), rng.standard_normal(6)
    w = rng.standard_normal((6, 5))
    b = rng.standard_normal(5) if bias else None
    s = rng.uniform(0.2, 2.0, 5) if scaled else None
    dout = rng.standard_normal((2, 3, 5))

    def fwd():
        return ops.layernorm_linear_forward(x, g, beta, w, b, col_scale=s)[0]

    ln, _ = ops.layernorm_forward(x, g, beta)
    ref = (ln @ w + (0 if b is None else b)) * (1 if s is None else s)
    np.testing.assert_allclose(fwd(), ref, rtol=1e-12, atol=1e-12)
    x_before = x.copy()
    _, cache = ops.layernorm_linear_forward(x, g, beta, w, b, col_scale=s)
    dw_t = np.full((5, 6), np.nan) if transposed else None  # a tied head's (V, C) gradient buffer
    dx, dg, dbeta, dw, db = ops.layernorm_linear_backward(dout, cache, dw_t=dw_t)
    np.testing.assert_array_equal(x, x_before)  # the input is not consumed
    f = lambda: scalar_of(fwd(), dout)
    for got, param in ((dx, x), (dg, g), (dbeta, beta), (dw, w)) + (((db, b),) if bias else ()):
        assert rel_error(got, numeric_grad(f, param)) < TOL
    assert db is None if not bias else db.shape == (5,)
    if transposed:
        np.testing.assert_array_equal(dw_t, dw.T)  # written into the given buffer


def test_gelu_forward_without_grad_and_overwriting_its_input(rng):
    x = rng.standard_normal((3, 7)) * 2
    y, none = ops.gelu_forward(x.copy(), grad=False)
    assert none is None
    xc = x.copy()
    y2, d = ops.gelu_forward(xc, overwrite=True)
    assert d is xc  # the derivative took the input's buffer
    np.testing.assert_array_equal(y, y2)
    y3, d3 = ops.gelu_forward(x)
    np.testing.assert_array_equal(d3, d)


def test_row_dot_products_either_way(rng):
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    for rowdot in (ops._rowdot, ops._rowdot_einsum):  # vecdot where numpy has it, einsum on 1.26
        np.testing.assert_allclose(rowdot(a, b), (a * b).sum(1), rtol=1e-12)


def test_gelu_matches_tanh_formula(rng):
    x = rng.standard_normal(50) * 3
    ref = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(ops.gelu_forward(x)[0], ref, rtol=1e-12, atol=1e-12)


def test_gelu_backward(rng):
    x = rng.standard_normal((3, 7)) * 2
    dout = rng.standard_normal((3, 7))
    _, cache = ops.gelu_forward(x)
    dx = ops.gelu_backward(dout, cache)
    f = lambda: scalar_of(ops.gelu_forward(x)[0], dout)
    assert rel_error(dx, numeric_grad(f, x)) < TOL


def test_embedding_backward_accumulates_repeats(rng):
    w = rng.standard_normal((5, 3))
    idx = np.array([[0, 2, 2], [4, 2, 0]])
    dout = rng.standard_normal((2, 3, 3))
    out, cache = ops.embedding_forward(w, idx)
    np.testing.assert_array_equal(out, w[idx])
    dw = ops.embedding_backward(dout, cache)
    f = lambda: scalar_of(ops.embedding_forward(w, idx)[0], dout)
    assert rel_error(dw, numeric_grad(f, w)) < TOL
    np.testing.assert_allclose(dw[2], dout[0, 1] + dout[0, 2] + dout[1, 1])
    np.testing.assert_array_equal(dw[1], 0)


def test_cross_entropy_value_and_ignore(rng):
    logits = rng.standard_normal((2, 3, 4))
    targets = np.array([[1, -1, 3], [0, 2, -1]])
    loss, _ = ops.cross_entropy_forward(logits, targets)
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid = [(0, 0, 1), (0, 2, 3), (1, 0, 0), (1, 1, 2)]
    ref = -np.mean([lp[b, t, c] for b, t, c in valid])
    assert loss == pytest.approx(ref, rel=1e-12)


def test_cross_entropy_backward(rng):
    logits = rng.standard_normal((2, 3, 4))
    targets = np.array([[1, -1, 3], [0, 2, -1]])
    _, cache = ops.cross_entropy_forward(logits, targets)
    d = ops.cross_entropy_backward(cache)
    f = lambda: ops.cross_entropy_forward(logits, targets)[0]
    assert rel_error(d, numeric_grad(f, logits)) < TOL
    np.testing.assert_array_equal(d[0, 1], 0)  # ignored positions get no gradient


@pytest.mark.parametrize("w", [1.0, 0.3])
def test_cross_entropy_with_soft_targets(rng, w):
    """Distillation: the target is w * teachers' probabilities + (1 - w) * the one-hot label. The value is
    that mixture's cross-entropy, the gradient checked by central differences in float64."""
    logits = rng.standard_normal((2, 3, 4))
    targets = np.array([[1, -1, 3], [0, 2, -1]])
    soft = rng.dirichlet(np.ones(4), size=(2, 3))  # (2, 3, 4), each row a distribution
    loss, cache = ops.cross_entropy_forward(logits, targets, soft=soft, soft_weight=w)
    lp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid = [(0, 0, 1), (0, 2, 3), (1, 0, 0), (1, 1, 2)]
    ref = np.mean([-(w * soft[b, t] * lp[b, t]).sum() - (1 - w) * lp[b, t, c] for b, t, c in valid])
    assert loss == pytest.approx(ref, rel=1e-12)
    d = ops.cross_entropy_backward(cache)
    f = lambda: ops.cross_entropy_forward(logits, targets, soft=soft, soft_weight=w)[0]
    assert rel_error(d, numeric_grad(f, logits)) < TOL
    np.testing.assert_array_equal(d[0, 1], 0)  # ignored positions get no gradient
    # a one-hot soft target is the plain loss
    onehot = np.eye(4)[np.where(targets < 0, 0, targets)]
    assert ops.cross_entropy_forward(logits, targets, soft=onehot, soft_weight=w)[0] == pytest.approx(
        ops.cross_entropy_forward(logits, targets)[0], rel=1e-12)


def test_dropout_mask_and_backward(rng):
    x = np.ones((100, 100))
    out, keep = ops.dropout_forward(x, 0.25, np.random.default_rng(1))
    frac = (out == 0).mean()
    assert 0.2 < frac < 0.3
    np.testing.assert_allclose(out[out != 0], 1 / 0.75)
    d = ops.dropout_backward(np.ones_like(x), keep)
    np.testing.assert_array_equal(d, out)
    same, none = ops.dropout_forward(x, 0.0, None)
    assert same is x and none is None
