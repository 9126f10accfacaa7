"""Cross-check against PyTorch (optional: skipped when torch is not installed).

The same weights go into an independent PyTorch implementation of the reference architecture
(F.layer_norm, F.scaled_dot_product_attention, F.gelu(approximate="tanh"), F.cross_entropy);
logits, loss, every gradient, and an AdamW + clipping step must agree in float32.
"""
import numpy as np
import pytest

from tinype import ModelConfig, Transformer
from tinype.gradcheck import rel_error
from tinype.optim import AdamW, clip_grad_norm

torch = pytest.importorskip("torch")
F = torch.nn.functional

from torch_reference import torch_forward  # noqa: E402  (needs torch)


@pytest.mark.parametrize("pe", ["learned", "nope"])
def test_logits_loss_and_gradients_match_pytorch(pe):
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=2, d_model=32, n_head=4, T_train=16, pe=pe)
    model = Transformer(cfg, seed=3)
    g = np.random.default_rng(0)
    idx, tg = g.integers(0, 256, (3, 16)), g.integers(0, 256, (3, 16))
    loss = model.loss(idx, tg)
    grads = model.backward()
    logits = model.forward(idx)

    P = {k: torch.tensor(v, requires_grad=True) for k, v in model.parameters().items()}
    t_logits = torch_forward(P, torch.tensor(idx), cfg, pe)
    t_loss = F.cross_entropy(t_logits.reshape(-1, 256), torch.tensor(tg).reshape(-1))
    t_loss.backward()

    assert rel_error(logits, t_logits.detach().numpy()) < 1e-5
    assert loss == pytest.approx(t_loss.item(), rel=1e-5)
    for name, grad in grads.items():
        assert rel_error(grad, P[name].grad.numpy()) < 1e-5, name


def test_adamw_and_clipping_match_pytorch():
    g = np.random.default_rng(1)
    params = {"w": g.standard_normal((4, 3)).astype(np.float32), "b": g.standard_normal(3).astype(np.float32),
              "pe.wpe": g.standard_normal((5, 3)).astype(np.float32)}
    tparams = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in params.items()}
    decay = [tparams["w"]]
    no_decay = [tparams["b"], tparams["pe.wpe"]]
    topt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    opt = AdamW(params, lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    for step in range(5):
        grads = {k: (g.standard_normal(v.shape) * 3).astype(np.float32) for k, v in params.items()}
        for k, p in tparams.items():
            p.grad = torch.tensor(grads[k])
        tnorm = torch.nn.utils.clip_grad_norm_(list(tparams.values()), 1.0)
        norm = clip_grad_norm(grads, 1.0)
        assert norm == pytest.approx(float(tnorm), rel=1e-5)
        lr = 1e-2 * (step + 1) / 5
        for group in topt.param_groups:
            group["lr"] = lr
        topt.step()
        opt.step(grads, lr)
    for k in params:
        np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), rtol=1e-5, atol=1e-6)
