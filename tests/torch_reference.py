"""The reference architecture written with PyTorch ops, for the cross-check test and the benchmark.

Imported only where torch is installed; tinype itself never imports torch.
"""
import torch

F = torch.nn.functional


def torch_forward(P, idx, cfg, pe):
    """The reference architecture written with PyTorch ops, reading tinype's parameter names."""
    B, T = idx.shape
    C, H = cfg.d_model, cfg.n_head
    x = P["wte"][idx]
    if pe == "learned":
        x = x + P["pe.wpe"][:T]
    for l in range(cfg.n_layer):
        h = f"h{l}."
        a = F.layer_norm(x, (C,), P[h + "ln_1.w"], P[h + "ln_1.b"], cfg.ln_eps)
        qkv = a @ P[h + "attn.w_qkv"] + P[h + "attn.b_qkv"]
        q, k, v = qkv.split(C, dim=-1)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)    # scale 1/sqrt(D) by default
        y = y.transpose(1, 2).reshape(B, T, C)
        x = x + (y @ P[h + "attn.w_proj"] + P[h + "attn.b_proj"])
        m = F.layer_norm(x, (C,), P[h + "ln_2.w"], P[h + "ln_2.b"], cfg.ln_eps)
        m = F.gelu(m @ P[h + "mlp.w_fc"] + P[h + "mlp.b_fc"], approximate="tanh")
        x = x + (m @ P[h + "mlp.w_proj"] + P[h + "mlp.b_proj"])
    x = F.layer_norm(x, (C,), P["ln_f.w"], P["ln_f.b"], cfg.ln_eps)
    return x @ P["wte"].T                                              # tied lm_head
