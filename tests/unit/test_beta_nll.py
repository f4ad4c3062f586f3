"""beta-NLL (model.lit.nll_beta): 0 is the plain likelihood; at 1 the mean's gradient is the
squared error's, whatever spread the decoder predicts."""

import torch

from twinode.models.decoders import gaussian_nll
from twinode.training.losses import beta_nll


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, generator=g)
    mask = (torch.rand(3, 5, 4, generator=g) > 0.3).float()
    mean = torch.randn(3, 5, 4, generator=g).requires_grad_(True)
    log_std = (torch.randn(3, 5, 4, generator=g) * 0.5).requires_grad_(True)
    return x, mask, mean, log_std


def test_beta_zero_is_the_plain_likelihood():
    x, mask, mean, log_std = _data()
    torch.testing.assert_close(beta_nll(x, mask, mean, log_std, 0.0)[0], gaussian_nll(x, mask, mean, log_std)[0])


def test_beta_one_gives_the_mean_the_squared_errors_gradient():
    x, mask, mean, log_std = _data()
    total, count = beta_nll(x, mask, mean, log_std, 1.0)
    assert float(count) == float(mask.sum())
    (g_beta,) = torch.autograd.grad(total, mean)
    (g_mse,) = torch.autograd.grad((0.5 * (x - mean).pow(2) * mask).sum(), mean)
    torch.testing.assert_close(g_beta, g_mse)
    # The plain likelihood's gradient differs where the spread is not 1.
    (g_nll,) = torch.autograd.grad(gaussian_nll(x, mask, mean, log_std)[0], mean)
    assert not torch.allclose(g_nll, g_mse)
    # The spread still learns: its gradient is not zero.
    (g_std,) = torch.autograd.grad(beta_nll(x, mask, mean, log_std, 1.0)[0], log_std)
    assert g_std.abs().sum() > 0
