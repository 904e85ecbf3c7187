"""The JSON shapes of the ``rnaret serve`` API (pydantic models: FastAPI builds the OpenAPI
schema at ``/api/openapi.json`` from them)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# yeast tRNA-Phe (76 nt), the classic folding example
EXAMPLE_FASTA = ">yeast_tRNA_Phe\nGCGGAUUUAGCUCAGUUGGGAGAGCGCCAGACUGAAGAUCUGGAGGUCCUGUGUUCGAUCCACAGAAUUCGCACCA\n"


class SequenceIn(BaseModel):
    """One sequence given as JSON."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(..., min_length=1, max_length=200, pattern=r"^[^\s>]+$",
                    description="identifier (no white space, no '>')", examples=["my_rna"])
    sequence: str = Field(..., description="nucleotides: IUPAC letters, U or T, either case",
                          examples=["GGGAAACCCAAAGGGUUUCCC"])


class JobRequest(BaseModel):
    """Sequences to analyse: FASTA text or a list of sequences (exactly one of the two)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"fasta": EXAMPLE_FASTA}]})
    fasta: str | None = Field(None, description="FASTA text (one or more records), or one bare sequence")
    sequences: list[SequenceIn] | None = Field(None, description="sequences as JSON objects")
    vienna: bool = Field(True, description="also fold with ViennaRNA (MFE) for comparison")
    embeddings: bool = Field(True, description="also compute embeddings (a .safetensors download, or .h5 "
                                               "for other layers or a cls/none pooling)")
    layers: str | list[int] = Field("last", description="embedding layers, as `rnaret embed --layers`: all, "
                                    "last or a list such as 0,2 (0 = the token embeddings, l = layer l's output)")
    pool: str = Field("mean", description="per-sequence pooling of the embeddings, as `rnaret embed --pool`: "
                      "mean, max, cls (the first token) or none (one row per nucleotide)")
    retention: str | None = Field(None, description="LAYER,HEAD (1-based), as `rnaret embed --retention`: also "
                                  "the (L, L) retention scores of that layer and head per sequence (.npy)",
                                  examples=["1,1"])

    @model_validator(mode="after")
    def _one_input(self) -> "JobRequest":
        if (self.fasta is None) == (self.sequences is None):
            raise ValueError("give exactly one of 'fasta' (FASTA text) or 'sequences' (a list)")
        return self


class Progress(BaseModel):
    done: int = Field(..., description="stages finished")
    total: int = Field(..., description="stages in the job (per sequence: structure, vienna, coding, embed, retention)")
    fraction: float = Field(..., ge=0, le=1)


class Download(BaseModel):
    name: str = Field(..., description="file name, e.g. model.bpseq")
    url: str
    description: str


class ModelStructure(BaseModel):
    """The fine-tuned model's secondary structure."""

    dot_bracket: str = Field(..., description="dot-bracket; pseudoknots use [] {} <> and letter pages")
    pairs: list[tuple[int, int]] = Field(..., description="base pairs, 1-based (i, j), i < j")
    n_pairs: int
    threshold: float = Field(..., description="pair score above which a pair may be predicted")
    max_pair_score: float
    drawn_pairs: int = Field(..., description="pairs in the drawing (pseudoknotted pairs are not drawn)")
    drawing_url: str = Field(..., description="SVG drawing (ViennaRNA layout); show it as an image")
    heatmap_url: str = Field(..., description="PNG heat map of the pair-score matrix (per-pair sigmoid scores)")
    pair_scores_url: str = Field(..., description="the (n, n) float32 pair-score matrix as .npy (per-pair sigmoid scores, not normalised probabilities)")


class ViennaStructure(BaseModel):
    """ViennaRNA's minimum free energy structure (Turner 2004, 37 °C)."""

    dot_bracket: str
    energy: float = Field(..., description="free energy, kcal/mol")
    pairs: list[tuple[int, int]] = Field(..., description="base pairs, 1-based (i, j), i < j")
    n_pairs: int
    drawing_url: str = Field(..., description="SVG drawing; show it as an image")


class CodingResult(BaseModel):
    """The fine-tuned coding model's answer."""

    probability: float = Field(..., description="coding probability: the best window's mean CDS probability")
    prediction: Literal["coding", "noncoding"] = Field(..., description="coding when probability >= 0.5")
    window_start: int = Field(..., description="1-based start of the best window")
    window: int = Field(..., description="window length (nt)")
    track: list[float] = Field(..., description="per-position CDS probability (one per nucleotide)")
    plot_url: str = Field(..., description="PNG plot of the track")


class EmbeddingsResult(BaseModel):
    url: str = Field(..., description=".safetensors (the last layer): per_sequence (1, d), per_nucleotide (n, d), "
                     "offsets, lengths; .h5 (other layers, or pool cls/none): layer_<l> per layer, as "
                     "`rnaret embed --out X.h5` writes")
    dim: int
    k: int
    layers: list[int] = Field(..., description="the layers in the file (0 = the token embeddings)")
    pool: str


class RetentionResult(BaseModel):
    """Retention scores of one layer and head (``rnaret embed --retention``)."""

    layer: int = Field(..., description="1-based")
    head: int = Field(..., description="1-based")
    size: int = Field(..., description="L: the matrix is (L, L), one row and column per token")
    url: str = Field(..., description="the (L, L) float32 matrix as .npy; row n = how much each position weighs "
                     "in position n's output")


class SequenceResult(BaseModel):
    """Everything computed for one sequence; a part is null when not asked for, not available on
    this server, or failed (``notes`` then says why)."""

    index: int
    id: str
    length: int
    sequence: str = Field(..., description="as analysed: upper case, U for T")
    structure: ModelStructure | None = None
    vienna: ViennaStructure | None = None
    coding: CodingResult | None = None
    embeddings: EmbeddingsResult | None = None
    retention: RetentionResult | None = None
    downloads: list[Download] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="stages skipped or failed, and why")
    seconds: dict[str, float] = Field(default_factory=dict, description="time per stage")


class JobStatus(BaseModel):
    """A job: its progress while queued or running, its results once done."""

    id: str
    status: Literal["queued", "running", "done"]
    progress: Progress
    n_sequences: int
    created: float = Field(..., description="epoch seconds")
    started: float | None = Field(None, description="epoch seconds when its first stage started")
    finished: float | None = Field(None, description="epoch seconds when its last stage finished")
    url: str = Field(..., description="poll this (GET) for progress; DELETE it to remove the job's files")
    results: list[SequenceResult] | None = Field(None, description="per sequence, in input order, once done")


class ErrorResponse(BaseModel):
    detail: str = Field(..., description="what is wrong, in words")


class StageInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    checkpoint: str | None = None


class LimitsInfo(BaseModel):
    max_request_bytes: int
    max_sequences: int
    max_total_length: int
    max_structure_length: int
    max_jobs: int


class ServerInfo(BaseModel):
    """What this server can do and accepts."""

    name: str
    version: str
    stages: dict[str, StageInfo] = Field(..., description="stage -> the model it runs (vienna: ViennaRNA)")
    limits: LimitsInfo
    workers: int
    job_ttl_s: float
