"""`rnaret export-hf CHECKPOINT OUT`: a Hugging Face model folder (needs `pip install rnaret[hf]`).

CHECKPOINT: our encoder checkpoint folder (or a pretraining run folder), our fine-tuned
checkpoint folder, a ``.safetensors`` file or a released ``.pth`` (pretrained or fine-tuned).
OUT (written atomically) loads with ``transformers`` (``trust_remote_code=True``) without
``rnaret`` installed; see ``rnaret.hf.export``.
"""
from __future__ import annotations

HELP = "convert a checkpoint or released .pth into a Hugging Face transformers model folder"


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="checkpoint folder (ours, pretrained or fine-tuned), .safetensors or "
                                           "released .pth")
    parser.add_argument("out", help="the model folder to write (replaced atomically)")


def run(args) -> int:
    import sys

    try:
        from rnaret.hf.export import export_hf
    except ImportError as exc:
        print(f"rnaret export-hf: needs the optional extra: pip install 'rnaret[hf]' ({exc})", file=sys.stderr)
        return 1
    out = export_hf(args.checkpoint, args.out)
    print(f"rnaret export-hf: wrote {out}", file=sys.stderr)
    return 0
