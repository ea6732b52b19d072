"""Wrong answers to lesson 02's graded exercises, graded by the real judge in
tests/classroom/test_exercises.py: grade_id -> {name: (the points it keeps, its source)}.

A wrong answer is appended to the teacher's solution cell (so helpers defined there stay)
and redefines the graded function; it must not call another exercise's function, since
one submission carries a wrong answer to several exercises at once.
"""

LESSON = "02_cnn_backprop"
_BN = '''
def batchnorm_backward(dout, x, gamma, eps):
    axes = AXES
    M = np.prod([x.shape[a] for a in axes])
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).sum(axis=axes, keepdims=True) / (M - UNBIASED)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * inv_std
    dbeta = dout.sum(axis=(0, 2, 3))
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))
    g = dout * gamma.reshape(1, -1, 1, 1)
    if CONSTANT_STATS:
        return g * inv_std, dgamma, dbeta
    dx = inv_std / M * (M * g - g.sum(axis=axes, keepdims=True)
                        - xhat * (g * xhat).sum(axis=axes, keepdims=True))
    return dx, dgamma, dbeta
'''


def _bn(axes="(0, 2, 3)", unbiased="0", constant="False"):
    return (_BN.replace("AXES", axes).replace("UNBIASED", unbiased)
            .replace("CONSTANT_STATS", constant))


BN_WRONG = {
    "treats the mean and variance as constants": (0, _bn(constant="True")),
    "the unbiased variance (M - 1)": (0, _bn(unbiased="1")),
    # right when H = W = 1
    "statistics over the batch axis only": (1, _bn(axes="(0,)")),
}
CASES = {"batchnorm_backward": BN_WRONG}
