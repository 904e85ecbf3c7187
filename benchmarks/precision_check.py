"""bf16 against fp32 on one device: how far the bf16 path is from exact float32, in one run.

The paper-size RetNet (k = 1, seeded random weights; ``--preset`` for another size) and the
Transformer baseline of the same size, on real sequences of the bundled RNAcentral sample
(a padded batch of mixed lengths), in both retention forms. Printed per case: the relative
error (||x - ref|| / ||ref||) of the outputs (``last_inner_state``, logits) and of the
gradients (input embeddings, all parameters) of

* bf16 autocast against exact float32 (on CUDA with TF32 off),
* on CUDA also float32 with TF32 on (what ``--precision fp32`` runs there) against exact float32,
* and the device's exact float32 against the CPU's float32 (the same model on both).

Usage: python benchmarks/precision_check.py [--device cuda] [--preset paper]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "resources" / "rnacentral" / "rnacentral_sample.fa.gz"


def batch(n: int, k: int, max_len: int):
    """A padded batch of the first n records of 100..max_len nt of the bundled sample."""
    from rnaret.io.fasta import read_fasta
    from rnaret.tokenizer import PAD, encode

    rows = []
    for record in read_fasta(SAMPLE):
        if 100 <= len(record.sequence) <= max_len:
            rows.append(torch.from_numpy(encode(record.sequence, k)))
        if len(rows) == n:
            break
    tokens = torch.full((n, max(len(r) for r in rows)), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, :len(r)] = r
    return tokens


def run(model, tokens, form, precision, device):
    """Outputs and gradients of a fixed loss, in ``precision`` on ``device``."""
    from rnaret.precision import autocast
    from rnaret.tokenizer import PAD

    model = model.to(device)
    model.zero_grad(set_to_none=True)
    tokens = tokens.to(device)
    mask = tokens != PAD
    embeddings = model.embed_tokens(tokens).detach().requires_grad_(True)
    with autocast(device, precision):
        out = model.forward_embeddings(embeddings, mask, form=form)
    weights = torch.linspace(-1, 1, out.logits.shape[-1], device=device)
    loss = (out.logits.float() * weights).tanh().sum() + out.last_inner_state.float().pow(2).mean()
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    keep = mask.cpu()
    return {"last_inner_state": out.last_inner_state.detach().float().cpu()[keep],
            "logits": out.logits.detach().float().cpu()[keep], "input grad": embeddings.grad.float().cpu()[keep],
            "parameter grads": grads.float().cpu()}


def rel(a, b) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--preset", default="paper", help="encoder size from the pretraining presets")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--max-len", type=int, default=1500)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("precision_check: --device cuda, but torch finds no CUDA device")
    from rnaret.model import build_encoder
    from rnaret.train.config import preset

    tokens = batch(args.rows, 1, args.max_len)
    print(f"bf16 against fp32 on {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
          + f": {args.preset} size, k=1, {args.rows} real sequences padded to {tokens.shape[1]} "
          "(relative errors ||x - ref|| / ||ref||)")
    for architecture, forms in (("retnet", ("parallel", "chunkwise")), ("transformer", (None,))):
        torch.manual_seed(0)
        config = preset(args.preset, 1, architecture=architecture).encoder_config()
        config.dropout = config.activation_dropout = 0.0
        model = build_encoder(config).eval()
        for form in forms:
            if args.device == "cuda":
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = False
            exact = run(model, tokens, form, "fp32", args.device)
            cases = {"bf16 vs fp32": run(model, tokens, form, "bf16", args.device)}
            if args.device == "cuda":
                torch.backends.cuda.matmul.allow_tf32 = True
                torch.backends.cudnn.allow_tf32 = True
                cases["fp32+TF32 vs fp32"] = run(model, tokens, form, "fp32", args.device)
                torch.backends.cuda.matmul.allow_tf32 = False
                cpu = run(model, tokens, form, "fp32", "cpu")
                cases["cuda fp32 vs cpu fp32"] = {key: exact[key] for key in exact}
                exact_for = {"cuda fp32 vs cpu fp32": cpu}
            else:
                exact_for = {}
            for name, got in cases.items():
                ref = exact_for.get(name, exact)
                finite = all(torch.isfinite(t).all() for t in got.values())
                errors = ", ".join(f"{key} {rel(got[key], ref[key]):.1e}" for key in got)
                print(f"  {architecture:>11} {form or 'attention':>9} {name:>22}: {errors}"
                      + ("" if finite else "  NON-FINITE VALUES"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
