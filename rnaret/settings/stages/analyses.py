"""The paper's analyses (``workflow/rules/analyses.smk``): per-family F1 of every structure
evaluation; PCA and CLS retention of every interaction evaluation and transcript retention of
every coding evaluation of a RetNet model, each figure with its data in :data:`ANALYSIS_DIR`."""
from __future__ import annotations

import re

from rnaret.settings.stages.base import Stage, join
from rnaret.settings.stages.finetune import evaluation_dir
from rnaret.settings.stages.report import REPORT_DIR

ANALYSIS_DIR = f"{REPORT_DIR}/analyses/{{task}}/{{dataset}}/{{model}}"
# the files `rnaret analyses <kind>` writes into an analysis_dir, per kind (rule outputs)
ANALYSIS_FILES = {
    "structure": ("per_sequence.tsv", "family.tsv", "family.png", "length.png"),
    "pca": ("pca_points.tsv", "pca_variance.tsv", "pca.png"),
    "cls-retention": ("cls_profile.tsv", "cls_example.tsv", "cls_map.tsv", "cls_bars.png", "cls_map.png"),
    "transcripts": ("profile.tsv", "map.tsv", "mrna.png", "lncrna.png", "codons.tsv", "kmers.tsv", "codons.png"),
}
ANALYSIS_KINDS = {"structure": ("structure",), "interaction": ("pca", "cls-retention"), "coding": ("transcripts",)}
# the paper's analyses read retention scores: the RetNet models only
RETNET_MODEL = r"rnaret-k[135]"


def analysis_dir(task: str, dataset: str, model: str) -> str:
    """:data:`ANALYSIS_DIR` of one evaluation: the paper's analyses of it."""
    return ANALYSIS_DIR.format(task=task, dataset=dataset, model=model)


class Analyses(Stage):
    """The jobs of the paper's analyses."""

    DIR = ANALYSIS_DIR
    FILES = ANALYSIS_FILES
    RETNET_MODEL = RETNET_MODEL

    def analyses(self) -> list[tuple[str, str, str, str]]:
        """(kind, task, dataset, model) of every analysis: per-family F1 of every structure
        evaluation (ViennaRNA's included); PCA and CLS retention of every interaction evaluation,
        and transcript retention of every coding evaluation, of a RetNet model (none of the generic
        tasks)."""
        out = [("structure", "structure", d, m) for d, m in self.plan.report.structure_evaluations()]
        for task, dataset, model in self.plan.finetune.evaluations:
            if task != "structure" and re.fullmatch(RETNET_MODEL, model):
                out += [(kind, task, dataset, model) for kind in ANALYSIS_KINDS.get(task, ())]
        return out

    def targets(self) -> list[str]:
        """Every file of the paper's analyses (``analysis_dir`` + ``ANALYSIS_FILES``)."""
        return [f"{analysis_dir(task, dataset, model)}/{name}" for kind, task, dataset, model in self.analyses()
                for name in ANALYSIS_FILES[kind]]

    def inputs(self, wildcards) -> dict:
        """A model analysis's inputs: the fine-tuned checkpoint, the test file and, for coding,
        the evaluation's predictions."""
        task, dataset, model = wildcards.task, wildcards.dataset, wildcards.model
        inputs = {"checkpoint": self.plan.finetune.checkpoint(task, dataset, model).depends,
                  "test": self.plan.split(task, dataset, "test").input}
        if task == "coding":
            inputs["predictions"] = f"{evaluation_dir(task, dataset, model)}/predictions.tsv"
        return inputs

    def args(self, wildcards) -> str:
        """`rnaret analyses cls-retention|transcripts` options: checkpoint, test file and split,
        device, the layer (``report.analyses.layer``) and, for coding, the predictions and the
        codon count (``report.analyses.codon_transcripts``)."""
        task, dataset, model = wildcards.task, wildcards.dataset, wildcards.model
        test = self.plan.split(task, dataset, "test")
        settings = self.config["report"].get("analyses") or {}
        args = ["--checkpoint", self.plan.finetune.checkpoint(task, dataset, model).path, "--test", test.path]
        if test.row_split is not None:
            args += ["--split", test.row_split]
        args += ["--device", self.plan.device("finetune")]
        if task == "coding":
            args += ["--predictions", f"{evaluation_dir(task, dataset, model)}/predictions.tsv",
                     "--max-transcripts", int(settings.get("codon_transcripts", 50))]
        if settings.get("layer") is not None:
            args += ["--layer", int(settings["layer"])]
        return join(args)

    def pca_inputs(self, wildcards) -> dict:
        """``inputs`` and the pretrained encoder the fine-tuned model started from."""
        return {**self.inputs(wildcards), "pretrained": self.plan.finetune.init(wildcards.model).depends}

    def pca_args(self, wildcards) -> str:
        """`rnaret analyses pca` options: checkpoint, test file and split, device, the pretrained encoder."""
        task, dataset, model = wildcards.task, wildcards.dataset, wildcards.model
        test = self.plan.split(task, dataset, "test")
        args = ["--checkpoint", self.plan.finetune.checkpoint(task, dataset, model).path, "--test", test.path]
        if test.row_split is not None:
            args += ["--split", test.row_split]
        return join(args + ["--device", self.plan.device("finetune"), "--pretrained",
                            self.plan.finetune.init(model).path])

    @staticmethod
    def f1_column(wildcards) -> str:
        """The per-sequence F1 column of a structure evaluation: ViennaRNA's MFE, the models' f1."""
        return "mfe_f1" if wildcards.model == "vienna" else "f1"
