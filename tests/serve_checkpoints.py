"""Small untrained checkpoints in the fine-tuned layout, to try or test the server without the
pipeline's results (tests, ``benchmarks/serve.py``). Their predictions mean nothing: the weights
are random. They are written by the same functions as real ones (``save_finetuned``,
``save_encoder``), so the server loads them exactly as it loads trained models.
"""
from __future__ import annotations

from pathlib import Path


def tiny_checkpoints(out_dir, *, width: int = 16, layers: int = 1, head_channels: int = 8,
                     head_blocks: int = 1, seed: int = 0) -> dict[str, Path]:
    """Write ``untrained-demo-structure/`` (k = 1), ``untrained-demo-coding/`` (k = 5) fine-tuned
    checkpoint folders and an ``untrained-demo-encoder/`` (k = 1) encoder folder into ``out_dir``
    -> ``{"structure", "coding", "embed"}`` paths (the server shows a checkpoint by its folder's
    name, so the page says these are untrained). ``width``: encoder d; ``layers``: encoder
    layers; ``head_*``: the structure head's size.
    """
    from rnaret.checkpoint import save_encoder
    from rnaret.model import EncoderConfig, build_encoder
    from rnaret.tasks import get_task
    from rnaret.checkpoint.finetuned import save_finetuned
    from rnaret.tasks.finetune import TaskModel
    from rnaret.train.skeleton import seed_everything

    out = Path(out_dir)
    seed_everything(seed)
    sizes = dict(retnet_embed_dim=width, retnet_value_embed_dim=width, retnet_ffn_embed_dim=2 * width,
                 retnet_layers=layers, retnet_retention_heads=2, dropout=0.0, activation_dropout=0.0)
    settings = {"structure": {"k": 1, "head_channels": head_channels, "head_blocks": head_blocks},
                "coding": {"k": 5, "hidden": 2 * width}}
    paths: dict[str, Path] = {}
    for name, task_settings in settings.items():
        task = get_task(name, task_settings)
        encoder = build_encoder(EncoderConfig.paper(task.k, **sizes)).eval()
        model = TaskModel(encoder, task.build_head(width)).eval()
        paths[name] = save_finetuned(model, task, out / f"untrained-demo-{name}", encoder_kind="retnet",
                                     init="random weights (tests/serve_checkpoints.py)")
    paths["embed"] = save_encoder(build_encoder(EncoderConfig.paper(1, **sizes)).eval(), out / "untrained-demo-encoder")
    return paths
