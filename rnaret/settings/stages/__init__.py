"""One module per stage of the pipeline, each holding what the stage's rules call: its output
path templates (the only definition of each ``results/`` path), its jobs' inputs, command-line
options and the values its resources depend on. ``rnaret.settings.Plan`` builds one of each from
the checked config.

- ``archives``: ``workflow/rules/archives.smk`` (``rnaret unpack``);
- ``data``: ``workflow/rules/data.smk`` (the corpus stages, dataset downloads, homology);
- ``pretrain``: ``workflow/rules/pretrain.smk`` (``rnaret launch -- pretrain``);
- ``finetune``: ``workflow/rules/finetune.smk`` (``rnaret finetune``, ``rnaret evaluate``);
- ``baselines``: ``workflow/rules/baselines.smk`` (``rnaret vienna``);
- ``report``: ``workflow/rules/report.smk`` (tables, scaling, figures);
- ``analyses``: ``workflow/rules/analyses.smk`` (``rnaret analyses``).
"""
from rnaret.settings.stages.analyses import Analyses
from rnaret.settings.stages.archives import Archives
from rnaret.settings.stages.baselines import Baselines
from rnaret.settings.stages.data import Data
from rnaret.settings.stages.finetune import Finetune
from rnaret.settings.stages.pretrain import Pretrain
from rnaret.settings.stages.report import Report

__all__ = ["Analyses", "Archives", "Baselines", "Data", "Finetune", "Pretrain", "Report"]
