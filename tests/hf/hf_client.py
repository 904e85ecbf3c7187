"""Run in a fresh interpreter (``python -S``) whose sys.path holds only the standard library,
the environment's site-packages (``.pth`` files not processed, so an editable rnaret is not
found) and an exported model folder: what a user with only ``transformers`` and ``torch`` does.

    python -S hf_client.py SITE_PACKAGES FOLDER INPUTS.safetensors SEQUENCES.json OUT_DIR [--train TABLE.tsv]

Writes OUT_DIR/outputs.safetensors (the models' tensors) and OUT_DIR/results.json (token ids,
fill-mask answers, the modules that were importable, the training step's losses).
"""
import sys

site_packages, folder = sys.argv[1], sys.argv[2]
sys.path = [p for p in sys.path if p and "site-packages" not in p] + [site_packages, folder]

import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

torch.set_num_threads(1)
inputs_path, sequences_path, out_dir = sys.argv[3], sys.argv[4], sys.argv[5]
train_table = sys.argv[sys.argv.index("--train") + 1] if "--train" in sys.argv else None
results = {"rnaret_importable": importlib.util.find_spec("rnaret") is not None,
           "sys_path": sys.path}

from transformers import (AutoConfig, AutoModel, AutoModelForMaskedLM,  # noqa: E402
                          AutoModelForSequenceClassification, AutoModelForTokenClassification,
                          AutoTokenizer, pipeline)

inputs = load_file(inputs_path)
ids, mask = inputs["input_ids"], inputs["attention_mask"]
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
results["config_class"] = type(config).__module__ + "." + type(config).__name__
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
with open(sequences_path) as fh:
    sequences = json.load(fh)
results["token_ids"] = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in sequences]
results["token_ids_default"] = [tokenizer(s)["input_ids"] for s in sequences]
batch = tokenizer(sequences, padding=True, return_tensors="pt")
results["batch_input_ids"] = batch["input_ids"].tolist()
results["batch_attention_mask"] = batch["attention_mask"].tolist()

outputs = {}
with torch.no_grad():
    base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    results["model_module"] = type(base).__module__
    out = base(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    outputs["last_hidden_state"] = out.last_hidden_state
    for i, state in enumerate(out.hidden_states):
        outputs[f"hidden_states.{i}"] = state
    if out.attentions is not None:
        for i, scores in enumerate(out.attentions):
            outputs[f"attentions.{i}"] = scores
    # each row alone, cut to its real length
    for row in range(ids.shape[0]):
        n = int(mask[row].sum())
        alone = base(input_ids=ids[row:row + 1, :n], output_hidden_states=True)
        for i, state in enumerate(alone.hidden_states):
            outputs[f"alone.{row}.hidden_states.{i}"] = state[0]
    if config.architectures == ["RnaretForMaskedLM"]:
        mlm = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True).eval()
        outputs["logits"] = mlm(input_ids=ids, attention_mask=mask).logits
        fill = pipeline("fill-mask", model=folder, trust_remote_code=True, device="cpu")
        masked = "GGGAAAC" + tokenizer.mask_token + "CUUUCCC"
        results["fill_mask"] = fill(masked, top_k=4)
    else:
        head = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
        outputs["sequence_logits"] = head(input_ids=ids, attention_mask=mask).logits
save_file({k: v.contiguous() for k, v in outputs.items()}, os.path.join(out_dir, "outputs.safetensors"))

if train_table is not None:
    # one optimisation step of a sequence classifier with the library's Trainer on a small table
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    with open(train_table) as fh:
        header, *rows = [line.rstrip("\n").split("\t") for line in fh if line.strip()]
    labels = sorted({r[header.index("label")] for r in rows})
    label_ids = {name: i for i, name in enumerate(labels)}
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, trust_remote_code=True, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id=label_ids)
    records = [dict(tokenizer(r[header.index("sequence")]), labels=label_ids[r[header.index("label")]])
               for r in rows]
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    args = TrainingArguments(output_dir=os.path.join(out_dir, "trainer"), per_device_train_batch_size=len(records),
                             max_steps=1, learning_rate=1e-2, use_cpu=True, report_to=[], save_strategy="no",
                             logging_steps=1, dataloader_num_workers=0, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=records,
                      data_collator=DataCollatorWithPadding(tokenizer))
    result = trainer.train()
    changed = sorted(k for k, v in model.named_parameters() if not torch.equal(v.detach(), before[k]))
    results["train"] = {"global_step": result.global_step, "loss": result.training_loss,
                        "changed": changed, "labels": labels, "n_records": len(records),
                        "classifier_class": type(model).__name__}
    with torch.no_grad():
        model.eval()
        batch = DataCollatorWithPadding(tokenizer)([{k: v for k, v in r.items() if k != "labels"} for r in records])
        results["train"]["logits_shape"] = list(model(**batch).logits.shape)

with open(os.path.join(out_dir, "results.json"), "w") as fh:
    json.dump(results, fh, indent=1, default=str)
