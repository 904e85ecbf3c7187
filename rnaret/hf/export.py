"""``export_hf``: an RNAret checkpoint -> a Hugging Face model folder that ``transformers`` loads
with ``trust_remote_code=True`` on a machine with only ``transformers`` and ``torch``.

The folder holds ``config.json`` (``RnaretConfig``, with the ``auto_map`` that names the code),
``model.safetensors``, the tokenizer files (``tokenizer_config.json``, ``vocab.json``), a model
card ``README.md``, and the code: ``configuration_rnaret.py``, ``modeling_rnaret.py``,
``tokenization_rnaret.py`` and every ``rnaret`` module they import, found by reading their
imports (``bundle_code``), each written under a flat name with its ``rnaret`` imports turned
into relative ones. So the folder runs the same encoder code as ``rnaret`` (one implementation:
the chunkwise O(n) form, the padding mask), copied at export time.

Sources (``read_source``):
* our encoder checkpoint folder (``config.json`` + ``weights.safetensors``; a pretraining run
  folder or its ``checkpoint/`` folder, whose ``summary.json`` then tells how it was trained), or
  a ``.safetensors`` file;
* our fine-tuned checkpoint folder (``task.json``, ``encoder/``, ``head.safetensors``), read as
  ``rnaret evaluate`` reads it (``rnaret.tasks.run.load_for_evaluation``: a head that does not
  fit its labels is refused naming ``head.safetensors``); the ``metrics.tsv`` beside it (the
  pipeline's ``results/<task>/<dataset>/<model>/``), when there is one, goes into the card;
* a released ``.pth``: pretrained (bare encoder keys) or fine-tuned (``ret.*`` + ``classifier.*``).
Heads: a pretrained encoder becomes ``RnaretForMaskedLM``; the interaction task's head (CLS
state -> Linear -> tanh -> Linear) is ``RnaretForSequenceClassification`` with CLS pooling; the
generic tasks' heads (``rnaret.heads.generic``, the modules the ``transformers`` classes use)
become ``RnaretForSequenceClassification`` (sequence-classification: ``id2label`` the task's
classes; sequence-regression: ``num_labels`` 1, ``problem_type`` regression) or
``RnaretForTokenClassification`` (the per-nucleotide tasks: n nt, n tokens, output i is
nucleotide i). A regression head predicts standardised values in ``rnaret``; the export folds
``label_scale`` ([mean, sd]) into its last layer, so the logits are the values ``rnaret``
predicts, in the label's units. A sequence-level model's tokenizer puts CLS in front of one
sequence (``cls_first``), as the task's inputs have it. The
structure head (a pairwise L x L map from a 2-D ResNet) and the coding head (per-position
Linear + Conv1d, then a 30-nt window maximum) have no ``transformers`` counterpart: their
encoder is exported (``RnaretForMaskedLM``, its MLM head as fine-tuned files carry it) and the
card says that the head was left out.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rnaret.io.atomic import atomic_dir
from rnaret.io.errors import InputError

# the modules named by the folder's auto_map; every rnaret module they import is bundled too
ENTRY_MODULES = ("rnaret.hf.configuration_rnaret", "rnaret.hf.modeling_rnaret", "rnaret.hf.tokenization_rnaret")
AUTO_MAP = {
    "AutoConfig": "configuration_rnaret.RnaretConfig",
    "AutoModel": "modeling_rnaret.RnaretModel",
    "AutoModelForMaskedLM": "modeling_rnaret.RnaretForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_rnaret.RnaretForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_rnaret.RnaretForTokenClassification",
}
TOKENIZER_AUTO_MAP = {"AutoTokenizer": ["tokenization_rnaret.RnaretTokenizer", None]}
CITATION = ("RNAret: a bidirectional retentive network RNA language model. Communications Biology (2026). "
            "doi:10.1038/s42003-026-09757-x")
PUBLISHED_CODE = "https://github.com/DrBlackZJU/RNAret"
UNMAPPED_HEADS = {
    "structure": "a pairwise (L x L) base-pair map from a 2-D ResNet over outer products: no transformers head",
    "coding": "per-position Linear + Conv1d scores, then the maximum over 30-nt windows: no transformers head",
}


@dataclass
class Source:
    """What an RNAret checkpoint holds, read for export: the encoder, the task head if any."""
    path: Path
    kind: str  # "encoder folder", "fine-tuned folder", "released .pth", "safetensors file"
    encoder: torch.nn.Module
    files: list[Path]  # the files whose sha256 the card lists
    task: str | None = None
    head_state: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)  # summary.json or task.json, when there is one
    head: torch.nn.Module | None = None  # a fine-tuned folder's head, as rnaret loads it
    task_settings: dict = field(default_factory=dict)  # a fine-tuned folder's task settings (classes ...)
    metrics: dict = field(default_factory=dict)  # the metrics.tsv beside a fine-tuned folder


def flat_name(module: str) -> str:
    """The file stem a bundled module gets in the folder: ``rnaret.hf.X`` -> ``X``, any other
    ``rnaret.a.b`` -> ``rnaret_a_b``."""
    if module.startswith("rnaret.hf."):
        return module[len("rnaret.hf."):]
    return module.replace(".", "_")


def _module_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"cannot bundle {module}: not found")
    path = Path(spec.origin)
    if path.name == "__init__.py":
        raise RuntimeError(f"cannot bundle the package {module}: import its modules by their own names")
    return path


def _rnaret_imports(tree: ast.Module, module: str) -> list[tuple[int, str]]:
    """(line number, absolute module) of every ``from rnaret... import`` in ``tree``, relative
    ones resolved against ``module``; RuntimeError for ``import rnaret...`` statements."""
    found = []
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "rnaret" or a.name.startswith("rnaret.") for a in node.names):
            raise RuntimeError(f"{module} line {node.lineno}: 'import rnaret...' cannot be bundled; "
                               "use 'from rnaret.x import name'")
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target == "rnaret" or target.startswith("rnaret."):
                found.append((node.lineno, target))
    return found


def bundle_code() -> dict[str, str]:
    """{file name: source text} of the entry modules and every rnaret module they import
    (recursively), each ``from rnaret.a import`` rewritten to ``from .rnaret_a import``.
    Raises RuntimeError when a bundled file would still import ``rnaret``."""
    files, pending, seen = {}, list(ENTRY_MODULES), set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        text = _module_file(module).read_text()
        lines = text.splitlines(keepends=True)
        for lineno, target in _rnaret_imports(ast.parse(text), module):
            line = lines[lineno - 1]
            new = re.sub(r"^(\s*)from\s+\S+\s+import\b", rf"\1from .{flat_name(target)} import", line, count=1)
            if new == line:
                raise RuntimeError(f"{module} line {lineno}: cannot rewrite the import of {target}")
            lines[lineno - 1] = new
            pending.append(target)
        source = "".join(lines)
        if _rnaret_imports(ast.parse(source), "bundled") or re.search(r"^\s*(from|import)\s+rnaret\b", source, re.M):
            raise RuntimeError(f"{module}: the bundled copy still imports rnaret")
        files[flat_name(module) + ".py"] = source
    return files


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _published_task(head_state: dict) -> str:
    """The task of a released fine-tuned file, from its head (``classifier.*``): the
    interaction head's keys, else the output convolution's kind (Conv1d: coding, per position;
    Conv2d: structure, per pair of positions)."""
    from rnaret.heads.interaction import PUBLISHED_RENAME

    if set(head_state) == set(PUBLISHED_RENAME):
        return "interaction"
    conv = head_state.get("conv_out.weight")
    return "coding" if conv is not None and conv.dim() == 3 else "structure"


def read_source(path) -> Source:
    """Read an RNAret checkpoint for export (see the module docstring); InputError naming the
    path when it is none of the accepted kinds or its files do not load."""
    from rnaret.checkpoint.encoder import CONFIG_NAME, WEIGHTS_NAME, load_encoder
    from rnaret.checkpoint.finetuned import HEAD_NAME, TASK_NAME, read_task_meta
    from rnaret.checkpoint.published import load_published_state_dict
    from rnaret.io.mapping import read_json_object

    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such checkpoint file or folder")
    if path.is_dir() and (path / TASK_NAME).exists():
        from rnaret.metrics import read_metrics_tsv
        from rnaret.tasks.run import load_for_evaluation

        meta = read_task_meta(path)
        if meta.get("encoder_kind", "retnet") == "onehot":
            raise InputError(path / TASK_NAME, "a one-hot control has no encoder to export")
        task, model = load_for_evaluation(path)
        beside = path.parent / "metrics.tsv"
        return Source(path, "fine-tuned folder", model.encoder, [path / "encoder" / WEIGHTS_NAME, path / HEAD_NAME],
                      meta["task"], model.head.state_dict(), meta, head=model.head, task_settings=dict(task.settings),
                      metrics=read_metrics_tsv(beside) if beside.exists() else {})
    if path.is_dir():
        folder = path / "checkpoint" if (path / "checkpoint" / WEIGHTS_NAME).exists() else path
        if not (folder / WEIGHTS_NAME).exists() or not (folder / CONFIG_NAME).exists():
            raise InputError(path, f"not an RNAret checkpoint folder (no {CONFIG_NAME} + {WEIGHTS_NAME}, "
                                   f"no {TASK_NAME})")
        summary = folder.parent / "summary.json"
        training = read_json_object(summary) if folder.name == "checkpoint" and summary.exists() else {}
        return Source(path, "encoder folder", load_encoder(folder), [folder / WEIGHTS_NAME], training=training)
    if path.suffix == ".safetensors":
        return Source(path, "safetensors file", load_encoder(path), [path])
    _, head = load_published_state_dict(path)
    return Source(path, "released .pth", load_encoder(path), [path], _published_task(head) if head else None, head)


def _generic_head(source: Source):
    """The ``transformers`` model of a generic task's fine-tuned folder (its head copied from
    ``rnaret``'s, a regression's label scale folded into the last layer) -> (model, note)."""
    from rnaret.hf import RnaretConfig, RnaretForSequenceClassification, RnaretForTokenClassification

    head, settings = source.head, source.task_settings
    level, kind = source.task.split("-")
    if kind == "regression":
        labels = dict(num_labels=1, problem_type="regression")
        what = "one number (in the label's units)"
    else:
        classes = [str(c) for c in settings["classes"]]
        labels = dict(num_labels=len(classes), id2label=dict(enumerate(classes)),
                      label2id={c: i for i, c in enumerate(classes)}, problem_type="single_label_classification")
        what = f"{len(classes)} classes"
    if level == "sequence":
        model_class, last = RnaretForSequenceClassification, "out_proj"
        shape = dict(classifier_pooling=head.pooling)
        note = (f"Fine-tuned for `{source.task}` with `rnaret finetune`: its head ({head.pooling} state -> "
                f"Linear -> tanh -> Linear, {what} per sequence) is this model's sequence-classification head.")
    else:
        model_class, last = RnaretForTokenClassification, "conv_out"
        shape = dict(classifier_hidden=head.linear_in.out_features, classifier_kernel_size=head.conv_out.kernel_size[0])
        note = (f"Fine-tuned for `{source.task}` with `rnaret finetune`: its head (per position Linear -> Conv1d "
                f"over {head.conv_out.kernel_size[0]} positions, {what} per nucleotide) is this model's "
                "token-classification head; a sequence of n nt gives n tokens, output i is nucleotide i.")
    config = RnaretConfig.from_encoder_config(source.encoder.config, classifier_dropout=head.dropout.p,
                                              architectures=[model_class.__name__], **shape, **labels)
    model = model_class(config)
    model.classifier.load_state_dict(head.state_dict(), strict=True)
    if kind == "regression":
        # rnaret's head predicts (value - mean) / sd: the folded layer predicts the value
        mean, sd = (float(v) for v in settings["label_scale"])
        layer = getattr(model.classifier, last)
        with torch.no_grad():
            layer.weight.mul_(sd)
            layer.bias.mul_(sd).add_(mean)
        note += f" rnaret's label scale (mean {mean:.6g}, sd {sd:.6g}) is folded into its last layer."
    return model, note


def build_model(source: Source):
    """The ``transformers`` model of ``source`` -> (model in eval mode, note on its head, whether
    a fine-tuned head was left out)."""
    from rnaret.heads.interaction import PUBLISHED_RENAME
    from rnaret.hf import RnaretConfig, RnaretForMaskedLM, RnaretForSequenceClassification
    from rnaret.tasks.settings import GENERIC_TASKS

    encoder = source.encoder
    left_out = False
    if source.task in GENERIC_TASKS:
        model, note = _generic_head(source)
    elif source.task == "interaction":
        state = dict(source.head_state)
        if set(state) == set(PUBLISHED_RENAME):
            state = {PUBLISHED_RENAME[k]: v for k, v in state.items()}
        config = RnaretConfig.from_encoder_config(encoder.config, classifier_pooling="cls", num_labels=2,
                                                  id2label={0: "no interaction", 1: "interaction"},
                                                  label2id={"no interaction": 0, "interaction": 1},
                                                  problem_type="single_label_classification",
                                                  architectures=["RnaretForSequenceClassification"])
        model = RnaretForSequenceClassification(config)
        try:
            model.classifier.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise InputError(source.path, f"the interaction head does not fit: {exc}") from None
        note = ("The interaction head (CLS state -> Linear -> tanh -> Linear, 2 classes) is this "
                "model's sequence-classification head (classifier_pooling: cls).")
    else:
        config = RnaretConfig.from_encoder_config(encoder.config, architectures=["RnaretForMaskedLM"])
        model = RnaretForMaskedLM(config)
        note = "The pretrained encoder with its masked-language-model head."
        if source.task is not None:
            left_out = True
            why = UNMAPPED_HEADS.get(source.task, "no transformers head of that layout")
            note = (f"Fine-tuned for the {source.task} task; its head is NOT included ({why}). This folder "
                    "holds the fine-tuned encoder, with the masked-language-model head the file carries.")
    model.rnaret.encoder.load_state_dict(encoder.state_dict(), strict=True)
    return model.eval(), note, left_out


def export_hf(checkpoint, out) -> Path:
    """Write the model folder of ``checkpoint`` to ``out`` atomically (see the module
    docstring) -> ``out``. InputError for an unreadable checkpoint."""
    from rnaret.hf import RnaretTokenizer

    source = read_source(checkpoint)
    model, note, left_out = build_model(source)
    model.config.auto_map = dict(AUTO_MAP)
    code = bundle_code()
    with atomic_dir(Path(out)) as tmp:
        model.save_pretrained(tmp)
        # a sequence-level generic task reads CLS + the k-mer tokens (its head may read the CLS state)
        tokenizer = RnaretTokenizer(k=model.config.k, cls_first=str(source.task).startswith("sequence-"))
        tokenizer.save_pretrained(tmp)
        tokenizer_config = tmp / "tokenizer_config.json"
        data = json.loads(tokenizer_config.read_text())
        data.update(auto_map=TOKENIZER_AUTO_MAP, tokenizer_class="RnaretTokenizer")
        tokenizer_config.write_text(json.dumps(data, indent=2) + "\n")
        for name, text in code.items():
            (tmp / name).write_text(text)
        (tmp / "README.md").write_text(model_card(source, model, note))
    if left_out:
        print(f"rnaret export-hf: {source.path}: the {source.task} head has no transformers form; exported "
              "the fine-tuned encoder only (RnaretForMaskedLM), as the model card says", file=sys.stderr)
    return Path(out)


def _training_lines(source: Source, best_point: bool = True) -> list[str]:
    """The card's lines on how the model was trained; ``best_point``: with a fine-tuned folder's
    best validation point (left to the "Task" section when the model has a head)."""
    training = source.training
    if source.kind == "released .pth":
        lines = ["Released with the paper (published code: " + PUBLISHED_CODE + ", commit f83f253). Pretraining as "
                 "published: masked-language modelling (spans of k tokens, 15 %, 80/10/10) on RNAcentral release 21.0 "
                 "(29.8 M sequences, cut to 2,000 nt), about 600k steps, dropout 0.2."]
        if source.task:
            lines.append(f"Then fine-tuned by the published script for the {source.task} task.")
        return lines
    if source.kind == "fine-tuned folder":
        best = (training.get("best") or {}) if best_point else {}
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in best.items()
                          if isinstance(v, (int, float, str)))
        precision = f" (precision {training['precision']})" if training.get("precision") else ""
        return [f"Fine-tuned with `rnaret finetune` for the `{source.task}` task from `{training.get('init')}`"
                f"{precision}." + (f" Best validation: {shown}." if shown else "")]
    if training:
        config = training.get("config", {})
        facts = [f"{training.get('steps')} steps", f"learning rate {config.get('lr')}",
                 f"schedule {config.get('schedule')}", f"up to {config.get('max_tokens')} tokens per step",
                 f"training windows of up to {config.get('max_train_len')} tokens"]
        return ["Pretrained with `rnaret pretrain` (masked-language modelling, spans of k tokens, 15 %, 80/10/10): "
                + ", ".join(facts) + f". Validation MLM loss {training.get('valid_loss'):.4f}, masked accuracy "
                f"{training.get('masked_accuracy'):.4f} (unigram entropy {training.get('unigram_entropy'):.4f})."
                if isinstance(training.get("valid_loss"), float) else
                "Pretrained with `rnaret pretrain`: " + ", ".join(facts) + "."]
    return ["No training record came with this checkpoint (no summary.json beside it)."]


def _metric_text(metrics: dict) -> str:
    """``name value, ...`` of the numeric metrics (4 significant digits)."""
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool))


def _task_section(source: Source, model) -> str:
    """The card's "Task" section of a model with a head (the task, its labels, the fine-tuning's
    metrics and how to call it), or "" for an encoder."""
    config = model.config
    if config.architectures == ["RnaretForMaskedLM"]:
        return ""
    token = config.architectures == ["RnaretForTokenClassification"]
    if config.problem_type == "regression":
        labels = ("one number per nucleotide" if token else "one number per sequence") + \
            " (the logits are the predicted values, in the label's units)"
    else:
        labels = ", ".join(f"{i} `{name}`" for i, name in sorted(config.id2label.items()))
    lines = ["## Task", "", f"Task: `{source.task}`. Outputs (`id2label`): {labels}.", ""]
    best = (source.training or {}).get("best") or {}
    if best.get("valid_metrics"):
        lines.append(f"Validation at the kept checkpoint (epoch {best.get('epoch')}, step {best.get('step')}; "
                     f"chosen on {best.get('metric')}): {_metric_text(best['valid_metrics'])}.")
    if source.metrics:
        lines.append(f"Test (`metrics.tsv` beside the checkpoint): {_metric_text(source.metrics)}.")
    if not best.get("valid_metrics") and not source.metrics:
        lines.append("No metrics came with this checkpoint.")
    auto = "AutoModelForTokenClassification" if token else "AutoModelForSequenceClassification"
    text = "\"UGAGGUAGUAGGUUGUAUAGUU\", \"CUAUACAACCUACUACCUCA\"" if source.task == "interaction" \
        else "\"GGGAAACCCUUUGGGAAACCC\""
    lines += ["", "```python", f"from transformers import {auto}, AutoTokenizer" +
              ("" if token else ", pipeline"), "",
              'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER", trust_remote_code=True)',
              f'model = {auto}.from_pretrained("THIS_FOLDER", trust_remote_code=True)',
              f"logits = model(**tokenizer([{text}], return_tensors=\"pt\")).logits"]
    if not token and source.task != "interaction":
        kind = "function_to_apply=\"none\"" if config.problem_type == "regression" else "top_k=None"
        lines += ['classify = pipeline("text-classification", model="THIS_FOLDER", trust_remote_code=True)',
                  f"classify({text}, {kind})"]
    lines += ["```", ""]
    if not token and source.task != "interaction":
        lines += ["The tokenizer puts CLS in front of the sequence, as the task's inputs have it.", ""]
    return "\n".join(lines) + "\n"


def model_card(source: Source, model, note: str) -> str:
    """The folder's README.md: what the model is, its source file(s) and sha256, how it was
    trained, how to use and cite it."""
    config = model.config
    enc = config.encoder_config()
    pipeline_tag = {"RnaretForSequenceClassification": "text-classification",
                    "RnaretForTokenClassification": "token-classification"}.get(config.architectures[0], "fill-mask")
    checksums = "\n".join(f"- `{p.name}` sha256 `{sha256(p)}`" for p in source.files)
    params = sum(p.numel() for p in model.rnaret.encoder.parameters())
    arch = ("bidirectional RetNet (multi-scale retention, decays 1 - 2^(-5-h) in both directions)"
            if enc.architecture == "retnet" else "Transformer baseline (rotary self-attention)")
    training = "\n".join(_training_lines(source, best_point=config.architectures == ["RnaretForMaskedLM"]))
    k = enc.k
    tokens = "the nucleotide" if k == 1 else f"the {k}-mer centred on it, {k // 2} FILL tokens at each end"
    length = (f"Length: retention runs in its chunkwise form above {enc.parallel_limit} tokens, in time and "
              "memory linear in the length; " if enc.architecture == "retnet" else "")
    length += "`attention_mask` marks padding, and a padded sequence gives what it gives alone."
    mask_text = "ACGU<mask>ACGU" if k == 1 else "ACGUACG<mask>ACGUACG"
    return f"""---
library_name: transformers
pipeline_tag: {pipeline_tag}
tags:
- rna
- biology
- rnaret
- retnet
---

# RNAret ({'fine-tuned: ' + source.task if source.task else 'pretrained'}, k = {k})

RNAret is an RNA language model: a {arch} encoder over overlapping {k}-mers of a nucleotide
sequence, pretrained by masked-language modelling. {note}

- Encoder: {enc.retnet_layers} layers, width {enc.retnet_embed_dim}, value width {enc.retnet_value_embed_dim},
  FFN {enc.retnet_ffn_embed_dim}, {enc.retnet_retention_heads} heads, vocabulary {enc.vocab_size}
  ({params:,} encoder parameters).
- Tokens: one per nucleotide ({tokens}), U read as T, UNK for k-mers with letters outside ACGU;
  ids as published.
- {length}

## Source

Converted by `rnaret export-hf` from the {source.kind} `{source.path.name}`:
{checksums}

## Training

{training}

{_task_section(source, model)}## Use

```python
from transformers import AutoModel, AutoTokenizer, pipeline

tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER", trust_remote_code=True)
model = AutoModel.from_pretrained("THIS_FOLDER", trust_remote_code=True)
batch = tokenizer(["GGGAAACCCUUU", "ACGU"], padding=True, return_tensors="pt")
out = model(**batch, output_hidden_states=True)
out.last_hidden_state   # (B, L, d): last layer, before the final norm (what task heads read)
out.hidden_states       # embeddings + one entry per layer
fill = pipeline("fill-mask", model="THIS_FOLDER", trust_remote_code=True)
fill("{mask_text}")
```

`output_attentions=True` returns each layer's retention scores (B, heads, L, L), formed only
when asked (O(L^2)). At k > 1 a `<mask>` hides one nucleotide: the k tokens holding it are masked
and the fill-mask pipeline answers with k-mers for each of them; the middle token's k-mer is
centred on the hidden nucleotide.

The code files in this folder are the `rnaret` package's own modules, copied at export.

## Citation

{CITATION}

Published code: {PUBLISHED_CODE}
"""
