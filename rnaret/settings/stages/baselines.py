"""The baselines stage (``workflow/rules/baselines.smk``): ViennaRNA (the model ``vienna``) on
every structure dataset's test split, written where a model's structure evaluation would be."""
from __future__ import annotations

from rnaret.settings.stages.base import Stage, join
from rnaret.settings.stages.finetune import EVALUATION_DIR

VIENNA = "vienna"
# ViennaRNA's evaluation of a structure dataset: the evaluation layout with task and model fixed
VIENNA_DIR = EVALUATION_DIR.format(task="structure", dataset="{dataset}", model=VIENNA)


class Baselines(Stage):
    """The ViennaRNA jobs."""

    DIR = VIENNA_DIR

    def datasets(self) -> list[str]:
        """Names of the structure datasets with a test split (ViennaRNA runs on each)."""
        return [name for name, d in self.plan.datasets.get("structure", {}).items() if d.has("test")]

    def inputs(self, wildcards) -> list[str]:
        """The structure dataset's test file."""
        return [self.plan.split("structure", wildcards.dataset, "test").input]

    def args(self, wildcards) -> str:
        """`rnaret vienna` options: the test split and ``baselines.vienna``'s method, gamma and span."""
        test = self.plan.split("structure", wildcards.dataset, "test")
        vienna = self.config["baselines"]["vienna"]
        args = ["--dataset", test.path]
        if test.row_split is not None:
            args += ["--split", test.row_split]
        args += ["--method", vienna["method"], "--gamma", vienna["gamma"]]
        if vienna.get("max_bp_span") is not None:
            args += ["--max-bp-span", int(vienna["max_bp_span"])]
        return join(args)

    def targets(self) -> list[str]:
        """metrics.tsv of :data:`VIENNA_DIR` for every structure dataset with a test split."""
        return [f"{VIENNA_DIR.format(dataset=name)}/metrics.tsv" for name in self.datasets()]
