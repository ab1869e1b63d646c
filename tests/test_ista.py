"""Soft-threshold pruning with LATS(l1=λ) is ISTA: it solves the Lasso (Chen et al., ICLR 2023)."""

import numpy as np
import torch
from sklearn.linear_model import Lasso
from torch import nn

from snnprune import LATS, Pruner


def compressed_sensing_problem(m=40, n=100, k=5, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n))
    x_true = np.zeros(n)
    support = rng.choice(n, size=k, replace=False)
    x_true[support] = rng.choice([-1.0, 1.0], size=k) * rng.uniform(1.0, 2.0, size=k)
    y = A @ x_true + 0.01 * rng.standard_normal(m)
    return A, y, x_true


def test_lats_lambda_form_with_sgd_solves_the_lasso():
    A, y, x_true = compressed_sensing_problem()
    m, n = A.shape
    lam = 0.05
    reference = Lasso(alpha=lam, fit_intercept=False, tol=1e-14, max_iter=1_000_000).fit(A, y).coef_

    layer = nn.Linear(n, 1, bias=False).double()
    nn.init.zeros_(layer.weight)  # all latent weights start at exactly 0: only the STE lets them move
    lipschitz = np.linalg.norm(A, 2) ** 2 / m
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0 / lipschitz)
    pruner = Pruner(layer, "soft_threshold", LATS(l1=lam))
    inputs, targets = torch.from_numpy(A), torch.from_numpy(y)[:, None]
    for _ in range(6_000):
        optimizer.zero_grad()
        loss = 0.5 * ((layer(inputs) - targets) ** 2).mean()  # (1/2m)‖Aw − y‖²
        loss.backward()
        optimizer.step()
        pruner.step(optimizer)
    solution = layer.weight.detach().numpy().ravel()

    assert np.array_equal(solution != 0, reference != 0)
    np.testing.assert_allclose(solution, reference, atol=1e-8)
    # and the Lasso found the planted support here
    assert np.array_equal(reference != 0, x_true != 0)
