"""Run in a fresh interpreter (``python -S``) whose sys.path holds only the standard library,
the environment's site-packages (``.pth`` files not processed, so an editable rnaret is not
found) and an exported fine-tuned model folder: a user with only ``transformers`` and ``torch``
who classifies sequences (or nucleotides) with it.

    python -S hf_head_client.py SITE_PACKAGES FOLDER SEQUENCES.json OUT_DIR

Writes OUT_DIR/outputs.safetensors (input_ids, attention_mask, logits of the padded batch) and
OUT_DIR/results.json (the classes loaded, id2label, problem_type, the text-classification
pipeline's answers for a sequence-level model, whether rnaret was importable).
"""
import sys

site_packages, folder = sys.argv[1], sys.argv[2]
sys.path = [p for p in sys.path if p and "site-packages" not in p] + [site_packages, folder]

import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

torch.set_num_threads(1)
sequences_path, out_dir = sys.argv[3], sys.argv[4]
results = {"rnaret_importable": importlib.util.find_spec("rnaret") is not None}

from transformers import (AutoConfig, AutoModelForSequenceClassification,  # noqa: E402
                          AutoModelForTokenClassification, AutoTokenizer, pipeline)

with open(sequences_path) as fh:
    sequences = json.load(fh)
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
token_level = config.architectures == ["RnaretForTokenClassification"]
auto = AutoModelForTokenClassification if token_level else AutoModelForSequenceClassification
model = auto.from_pretrained(folder, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
batch = tokenizer(sequences, padding=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**batch).logits
results.update(model_class=type(model).__name__, model_module=type(model).__module__,
               id2label={str(k): v for k, v in model.config.id2label.items()},
               problem_type=model.config.problem_type, num_labels=model.config.num_labels)
if not token_level:
    classify = pipeline("text-classification", model=folder, trust_remote_code=True, device="cpu")
    if model.config.problem_type == "regression":
        results["pipeline"] = classify(sequences, function_to_apply="none")
    else:
        results["pipeline"] = classify(sequences, top_k=None)
save_file({"input_ids": batch["input_ids"].contiguous(), "attention_mask": batch["attention_mask"].contiguous(),
           "logits": logits.contiguous()}, os.path.join(out_dir, "outputs.safetensors"))
with open(os.path.join(out_dir, "results.json"), "w") as fh:
    json.dump(results, fh, indent=1)
