"""Secondary-structure task: the pairing constraint, decoding, the pairwise head, released
weights, a brief fine-tune with the contract outputs, and `rnaret fold`.

Real data: the bundled bpRNA splits (resources/structure/). Models: a tiny encoder saved with
``save_encoder`` (random weights; the task code does not care how good it is).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import pandas as pd
import torch
from torch import nn

from rnaret.checkpoint import save_encoder
from rnaret.cli import main
from rnaret.heads.structure import StructureHead, published_head_shape
from rnaret.io.structure import StructureRecord, read_structures, write_bpseq_folder, write_dbn, write_structure_table
from rnaret.metrics import read_metrics_tsv, structure_scores
from rnaret.model import build_encoder
from rnaret.tasks import get_task
from rnaret.tasks.structure import base_codes, decode_pairs, pair_constraint
from rnaret.train.config import preset

CANONICAL = {("A", "U"), ("U", "A"), ("C", "G"), ("G", "C"), ("G", "U"), ("U", "G")}
SMALL_HEAD = {"head_channels": 8, "head_blocks": 2}


def brute_force_allowed(sequence: str, min_distance: int = 4) -> np.ndarray:
    """The constraint written the slow, obvious way (test-only loops)."""
    s = sequence.upper().replace("T", "U")
    n = len(s)
    allowed = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(n):
            allowed[i, j] = abs(i - j) >= min_distance and (s[i], s[j]) in CANONICAL
    return allowed


def greedy_reference(p: np.ndarray, allowed: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Greedy by probability over all candidate pairs, ties by (i, j): the decoding rule, slowly."""
    n = len(p)
    candidates = sorted(((-p[i, j], i, j) for i in range(n) for j in range(i + 1, n)
                         if allowed[i, j] and p[i, j] > threshold))
    used, pairs = set(), []
    for _, i, j in candidates:
        if i not in used and j not in used:
            used.update((i, j))
            pairs.append((i + 1, j + 1))
    return sorted(pairs)


def assert_valid_structure(pairs, sequence, probabilities=None, threshold=0.5, min_distance=4):
    """No base twice, i < j, canonical, far enough, above threshold; maximal (greedy leaves no
    free candidate)."""
    s = sequence.upper().replace("T", "U")
    bases = [b for pair in pairs for b in pair]
    assert len(bases) == len(set(bases)), f"a base is paired twice: {pairs}"
    for i, j in pairs:
        assert 1 <= i < j <= len(s)
        assert j - i >= min_distance
        assert (s[i - 1], s[j - 1]) in CANONICAL, (i, j, s[i - 1], s[j - 1])
        if probabilities is not None:
            assert probabilities[i - 1, j - 1] > threshold
    if probabilities is not None:
        free = np.ones(len(s), dtype=bool)
        free[[b - 1 for b in bases]] = False
        allowed = brute_force_allowed(sequence, min_distance)
        left = np.triu(allowed & (probabilities > threshold), 1) & free[:, None] & free[None, :]
        assert not left.any(), "a candidate pair with two free bases was left out"


@pytest.fixture(scope="module")
def bundled(resources):
    return {split: list(read_structures(resources / "structure" / f"bprna_{split}.csv"))
            for split in ("train", "valid", "test")}


# -- constraint ---------------------------------------------------------------------------------
def test_constraint_mask_equals_brute_force_on_bundled_sequences(bundled):
    lower = [r for r in bundled["train"] if any(c.islower() for c in r.sequence)][:2]
    assert lower, "the bundled data has lower-case sequences (SOURCE.md)"
    records = bundled["test"][:5] + lower + [StructureRecord("t_and_n", "GGGACNTTTCCcTtNa", [])]
    task = get_task("structure", SMALL_HEAD)
    batch = task.collate([task.example(r) for r in records])
    allowed = task.allowed(batch).numpy()
    for row, record in enumerate(records):
        n = len(record.sequence)
        assert np.array_equal(allowed[row, :n, :n], brute_force_allowed(record.sequence)), record.id
        assert not allowed[row, n:, :].any() and not allowed[row, :, n:].any()
    # another distance, straight from base codes
    codes = torch.from_numpy(base_codes(records[0].sequence)).unsqueeze(0)
    assert np.array_equal(pair_constraint(codes, None, 6)[0].numpy(), brute_force_allowed(records[0].sequence, 6))


# -- decoding -----------------------------------------------------------------------------------
def test_decoding_matches_greedy_reference_and_respects_constraints_on_random_maps(bundled):
    rng = np.random.default_rng(0)
    for trial in range(25):
        record = bundled["test"][trial]
        sequence = record.sequence[: int(rng.integers(5, 90))]
        n = len(sequence)
        p = rng.random((n, n))
        if trial % 2:
            p = (p + p.T) / 2
        allowed = brute_force_allowed(sequence)
        pairs = decode_pairs(p, allowed, 0.5)
        assert pairs == greedy_reference(p, allowed, 0.5)
        assert_valid_structure(pairs, sequence, p)


@pytest.mark.parametrize("kind", ["all_ones", "ties", "one_greedy_base", "at_threshold", "torch_input"])
def test_decoding_on_adversarial_maps(bundled, kind):
    sequence = bundled["test"][0].sequence
    n = len(sequence)
    allowed = brute_force_allowed(sequence)
    if kind == "all_ones":
        p = np.ones((n, n))
    elif kind == "ties":
        p = np.full((n, n), 0.9)
        p[::3, ::2] = 0.95
    elif kind == "one_greedy_base":
        p = np.full((n, n), 0.6)
        p[10, :] = p[:, 10] = 0.99  # every partner of base 11 beats everything else
    elif kind == "at_threshold":
        p = np.full((n, n), 0.5)  # strictly above the threshold only: no pair
    else:
        p = torch.rand(n, n, generator=torch.Generator().manual_seed(1)) * 0.2 + 0.8
    pairs = decode_pairs(p, allowed, 0.5)
    p_np = p.numpy() if isinstance(p, torch.Tensor) else p
    assert pairs == greedy_reference(p_np, allowed, 0.5)
    assert_valid_structure(pairs, sequence, p_np)
    if kind == "at_threshold":
        assert pairs == []
    else:
        assert pairs
    if kind == "one_greedy_base":
        assert any(11 in pair for pair in pairs)
    # without the constraint, decoding still never pairs a base twice
    free_pairs = decode_pairs(p, None, 0.5)
    bases = [b for pair in free_pairs for b in pair]
    assert len(bases) == len(set(bases))


# -- the pairwise head --------------------------------------------------------------------------
def published_classifier(d: int, channels: int, blocks: int) -> nn.Module:
    """The released classifier's layout (names and computation of ssp.py's ResNet2D_classifier),
    with the outer concatenation built explicitly."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_net = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                          nn.Conv2d(channels, channels, 3, padding="same"), nn.ReLU(),
                                          nn.Conv2d(channels, channels, 1), nn.ReLU())

        def forward(self, x):
            return x + self.conv_net(x)

    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(Block() for _ in range(blocks))

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear_in = nn.Linear(2 * d, channels)
            self.resnet = Stack()
            self.conv_out = nn.Conv2d(channels, 1, 3, padding="same")

        def forward(self, h):  # (B, L, d) -> (B, L, L), z[i, j] from concat(h_i, h_j)
            n = h.shape[1]
            x = torch.cat([h.unsqueeze(2).expand(-1, -1, n, -1), h.unsqueeze(1).expand(-1, n, -1, -1)], -1)
            x = self.linear_in(x).permute(0, 3, 1, 2)
            for block in self.resnet.blocks:
                x = block(x)
            return self.conv_out(x).squeeze(1)

    torch.manual_seed(3)
    model = Classifier()
    for parameter in model.parameters():  # larger than default init so differences would show
        nn.init.normal_(parameter, std=0.2)
    return model


def test_outer_concatenation_trick_equals_explicit_concatenation():
    torch.manual_seed(0)
    head = StructureHead(12, channels=6, blocks=2)
    states = torch.randn(3, 21, 12)
    n = states.shape[1]
    explicit = torch.cat([states.unsqueeze(2).expand(-1, -1, n, -1), states.unsqueeze(1).expand(-1, n, -1, -1)], -1)
    expected = head.linear_in(explicit).permute(0, 3, 1, 2)            # (B, C, L, L)
    torch.testing.assert_close(head.pair_features(states), expected, rtol=1e-5, atol=1e-5)


def test_head_matches_the_published_computation_and_ignores_padding():
    reference = published_classifier(10, 6, 3)
    head = StructureHead(10, channels=6, blocks=3, symmetrize="lower")
    head.load_published_state_dict(reference.state_dict())
    states = torch.randn(2, 30, 10, generator=torch.Generator().manual_seed(0))
    z = reference(states)
    lower = torch.tril(torch.ones(30, 30, dtype=torch.bool), -1)
    expected = torch.where(lower, z, z.transpose(1, 2))                # the orientation it was trained on
    out = head(states, torch.ones(2, 30, dtype=torch.bool))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    head.symmetrize = "mean"
    torch.testing.assert_close(head(states), 0.5 * (z + z.transpose(1, 2)), rtol=1e-4, atol=1e-4)
    # a sequence padded inside a batch gives its unpadded logits
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 17:] = False
    padded = head(states, mask)[1, :17, :17]
    torch.testing.assert_close(padded, head(states[1:, :17])[0], rtol=1e-5, atol=1e-5)


def test_cpu_passes_give_the_one_pass_logits_and_gradients(bundled, monkeypatch):
    """A batch split into several passes of the residual stack (CPU_TILE_ELEMENTS) gives the
    logits and gradients of one pass, with and without autograd (the in-place inference path)."""
    import rnaret.heads.structure as structure_head

    lengths = [len(r.sequence) for r in bundled["test"][:5]]
    n = max(lengths)
    mask = torch.arange(n).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    torch.manual_seed(0)
    head = StructureHead(10, channels=6, blocks=3).double()  # float64: the sums' order does not show
    states = torch.randn(len(lengths), n, 10, dtype=torch.float64)

    def run(tile: int):
        monkeypatch.setattr(structure_head, "CPU_TILE_ELEMENTS", tile)
        head.zero_grad()
        leaf = states.clone().requires_grad_(True)
        logits = head(leaf, mask)
        (logits * mask.unsqueeze(1) * mask.unsqueeze(2)).square().sum().backward()
        with torch.no_grad():
            inference = head(states, mask)
        return logits.detach(), inference, leaf.grad, [p.grad.clone() for p in head.parameters()]

    whole = run(2**40)
    tiled = run(6 * n * n * 2)    # two sequences a pass: three passes
    for one, other in zip(whole[:3], tiled[:3]):
        torch.testing.assert_close(one, other, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(whole[0], whole[1], rtol=1e-12, atol=1e-12)
    for one, other in zip(whole[3], tiled[3]):
        torch.testing.assert_close(one, other, rtol=1e-10, atol=1e-10)

def test_published_state_dict_loads_strictly_with_clear_errors():
    reference = published_classifier(10, 6, 2)
    state = reference.state_dict()
    assert published_head_shape(state) == {"d": 10, "channels": 6, "blocks": 2, "kernel_size": 3}
    head = StructureHead(10, channels=6, blocks=2)
    head.load_published_state_dict(state)
    for name in state:
        torch.testing.assert_close(head.state_dict()[name], state[name])
    missing = {k: v for k, v in state.items() if k != "resnet.blocks.1.conv_net.2.bias"}
    with pytest.raises(ValueError, match=r"missing keys .*resnet\.blocks\.1\.conv_net\.2\.bias"):
        StructureHead(10, 6, 2).load_published_state_dict(missing)
    with pytest.raises(ValueError, match="unexpected keys .*extra.weight"):
        StructureHead(10, 6, 2).load_published_state_dict({**state, "extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="linear_in.weight has shape"):
        StructureHead(10, 8, 2).load_published_state_dict(state)


# -- fine-tuning, evaluation, fold --------------------------------------------------------------
@pytest.fixture(scope="module")
def work(tmp_path_factory, bundled):
    """A tiny encoder, small splits in three formats, a fine-tuned checkpoint and its evaluation."""
    from rnaret.tasks.run import run_evaluate, run_finetune

    root = tmp_path_factory.mktemp("structure")
    torch.manual_seed(0)
    save_encoder(build_encoder(preset("tiny", 1).encoder_config()), root / "encoder")
    short = {s: [r for r in records if len(r.sequence) <= 90] for s, records in bundled.items()}
    write_structure_table(short["train"][:16], root / "train.csv")
    write_dbn(short["valid"][:6], root / "valid.dbn")
    test = short["test"][:8]
    write_bpseq_folder(test, root / "test_bpseq")
    entry = {"train": str(root / "train.csv"), "valid": str(root / "valid.dbn"), "test": str(root / "test_bpseq")}
    settings = {"preset": "laptop", **SMALL_HEAD, "epochs": 2, "batch_size": 4, "train_crop": 64,
                "lr": 3e-3, "warmup_steps": 0}
    best = run_finetune("structure", entry, str(root / "encoder"), root / "checkpoint", settings=settings,
                        progress=False)
    metrics = run_evaluate(root / "checkpoint", entry, root / "eval", progress=False)
    return {"root": root, "entry": entry, "test": test, "best": best, "metrics": metrics,
            "settings": settings}


def test_finetune_writes_structure_outputs_in_contract_format(work):
    root, test = work["root"], work["test"]
    meta = json.loads((root / "checkpoint" / "task.json").read_text())
    assert meta["task"] == "structure" and meta["settings"]["head_channels"] == 8
    log = pd.read_csv(root / "checkpoint" / "train_log.tsv", sep="\t")
    # the best point is the validation pass with the highest F1, not the last one
    assert work["best"]["metric"] == "f1"
    assert work["best"]["value"] == pytest.approx(log["valid_f1"].max(), abs=1e-6)
    assert work["best"]["step"] == int(log.loc[log["valid_f1"].idxmax(), "step"])
    out = root / "eval"
    metrics = read_metrics_tsv(out / "metrics.tsv")
    assert list(metrics) == ["f1", "precision", "recall", "f1_pk", "precision_pk", "recall_pk", "n", "n_pk",
                             "protocol"]
    assert metrics["protocol"] == "rnaret"
    assert metrics["n"] == len(test)
    assert (out / "metrics.tsv").read_text().startswith("metric\tvalue\n")
    # CT holds every predicted pair; the metrics are those of the written structures
    ct = list(read_structures(out / "predictions.ct"))
    assert [r.id for r in ct] == [r.id for r in test]
    assert [r.sequence for r in ct] == [r.sequence for r in test]
    expected, per_sequence = structure_scores([r.pairs for r in test], [r.pairs for r in ct])
    assert math.isclose(metrics["f1"], expected["f1"]) and math.isclose(metrics["recall"], expected["recall"])
    dbn = {r.id: r for r in read_structures(out / "predictions.dbn")}
    bpseq = {r.id: r for r in read_structures(out / "predictions_bpseq")}
    for record in ct:
        assert_valid_structure(record.pairs, record.sequence)
        assert bpseq[record.id].pairs == record.pairs
        assert dbn[record.id].pairs == record.pairs  # the dot-bracket holds every pair, pseudoknots too
        assert dbn[record.id].sequence == record.sequence

    table = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert list(table["id"]) == [r.id for r in test]
    assert {"f1", "precision", "recall", "f1_pk", "structure", "true_structure", "length"} <= set(table.columns)
    assert math.isclose(table["f1"].mean(), metrics["f1"], rel_tol=1e-5, abs_tol=1e-6)
    assert list(table["true_structure"]) == [r.dot_bracket for r in test]
    assert (out / "contact_maps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluation_outputs_hold_exactly_the_predicted_pairs(bundled, tmp_path):
    """The evaluation's files, written from predictions that have pairs (the true structures of
    bundled test records, pseudoknotted ones among them, and each with its last pair dropped):
    .dbn, .ct and .bpseq read back to exactly those pairs, and the per-sequence F1 in
    predictions.tsv is the hand-counted one."""
    task = get_task("structure", {"preset": "laptop"})
    chosen = [r for r in bundled["test"] if r.pairs][:6]
    knotted = next(r for r in bundled["test"] if any(a < c < b < d for a, b in r.pairs for c, d in r.pairs))
    chosen.append(knotted)
    rows = []
    for index, record in enumerate(chosen):
        predicted = record.pairs if index % 2 == 0 else record.pairs[:-1]
        rows.append({"id": record.id, "length": len(record.sequence), "sequence": record.sequence,
                     "pairs": predicted, "true_pairs": record.pairs})
    task.write_outputs(rows, task.metrics(rows), tmp_path)
    written = {name: {r.id: r for r in read_structures(tmp_path / name)}
               for name in ("predictions.dbn", "predictions.ct", "predictions_bpseq")}
    for row in rows:
        for name, records in written.items():
            assert records[row["id"]].pairs == row["pairs"], (name, row["id"])
            assert records[row["id"]].sequence.upper() == row["sequence"].upper(), (name, row["id"])
    table = pd.read_csv(tmp_path / "predictions.tsv", sep="\t")
    n_true = np.array([len(r["true_pairs"]) for r in rows])
    n_pred = np.array([len(r["pairs"]) for r in rows])  # every predicted pair is a true one
    np.testing.assert_allclose(table["f1"], 2 * n_pred / (n_pred + n_true), atol=5e-6)  # 6 digits written
    assert table["f1"].tolist()[::2] == [1.0] * len(rows[::2])


def test_onehot_control_runs_through_the_same_head(work):
    from rnaret.tasks.run import run_finetune

    root = work["root"]
    best = run_finetune("structure", work["entry"], "onehot", root / "onehot", progress=False,
                        settings={**work["settings"], "epochs": 1})
    meta = json.loads((root / "onehot" / "task.json").read_text())
    assert meta["encoder_kind"] == "onehot" and best["metric"] == "f1"
    from rnaret.fold import load_structure_model

    _, model = load_structure_model(root / "onehot")
    assert isinstance(model.head, StructureHead) and model.head.d == 10 and model.head.channels == 8


def test_predict_structure_is_independent_of_batching(work, bundled):
    from rnaret.fold import load_structure_model, predict_structure

    task, model = load_structure_model(work["root"] / "checkpoint")
    sequences = [r.sequence for r in bundled["valid"][:5]]
    together = predict_structure(model, sequences, task=task, max_pairs=10**7)
    alone = [predict_structure(model, [s], task=task)[0] for s in sequences]
    for a, b, s in zip(together, alone, sequences):
        assert a.sequence == s and a.pair_scores.shape == (len(s), len(s))
        np.testing.assert_allclose(a.pair_scores, b.pair_scores, atol=1e-5)
        np.testing.assert_allclose(a.pair_scores, a.pair_scores.T, atol=1e-6)
        assert not a.pair_scores[~brute_force_allowed(s)].any()
        assert a.pairs == decode_pairs(a.pair_scores, brute_force_allowed(s), 0.5)
        assert_valid_structure(a.pairs, s, a.pair_scores)
        assert StructureRecord("x", s, a.pairs).dot_bracket == a.dot_bracket


def write_fasta(path, records):
    path.write_text("".join(f">{rid} some description\n{seq}\n" for rid, seq in records))
    return path


def test_fold_end_to_end_in_every_format(work, bundled, tmp_path, capsys):
    records = [(r.id, r.sequence) for r in bundled["test"][:3]]
    records.append(("lower/T", bundled["train"][0].sequence.lower().replace("u", "t")))
    fasta = write_fasta(tmp_path / "in.fa", records)
    checkpoint = str(work["root"] / "checkpoint")
    assert main(["fold", str(fasta), "--checkpoint", checkpoint, "--output", str(tmp_path / "out.dbn"),
                 "--pair-scores", str(tmp_path / "p.npz"), "--quiet"]) == 0
    folded = list(read_structures(tmp_path / "out.dbn"))
    assert [(r.id, r.sequence) for r in folded] == records
    scores = np.load(tmp_path / "p.npz")
    for record in folded:
        p = scores[record.id]
        assert p.shape == (len(record.sequence),) * 2
        assert record.pairs == decode_pairs(p, brute_force_allowed(record.sequence), 0.5)
        assert_valid_structure(record.pairs, record.sequence, p)
    assert main(["fold", str(fasta), "--checkpoint", checkpoint, "--output", str(tmp_path / "out.ct"),
                 "--pair-scores", str(tmp_path / "p.tsv.gz"), "--quiet"]) == 0
    assert [r.pairs for r in read_structures(tmp_path / "out.ct")] == [r.pairs for r in folded]
    import pandas as pd

    listed = pd.read_csv(tmp_path / "p.tsv.gz", sep="\t")
    assert list(listed.columns) == ["id", "i", "j", "pair_score"]
    assert (listed["i"] < listed["j"]).all() and (listed["pair_score"] >= 0.01).all()
    assert main(["fold", str(fasta), "--checkpoint", checkpoint, "--output", str(tmp_path / "bp"),
                 "--format", "bpseq", "--quiet"]) == 0
    files = sorted(p.name for p in (tmp_path / "bp").iterdir())
    assert files == sorted([f"{rid}.bpseq" for rid, _ in records[:3]] + ["lower_T.bpseq"])
    assert list(read_structures(tmp_path / "bp" / "lower_T.bpseq"))[0].pairs == folded[3].pairs


def test_fold_loads_a_released_finetuned_pth(tmp_path, bundled):
    """A published-layout RNAStrAlign_1mer.pth (ret.* + classifier.*) folds through `rnaret fold`
    with the published computation (head sizes taken from the file)."""
    from rnaret.fold import load_structure_model, predict_structure

    torch.manual_seed(1)
    encoder = build_encoder(preset("tiny", 1).encoder_config()).eval()
    classifier = published_classifier(encoder.config.retnet_embed_dim, 6, 2)
    state = {f"ret.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"classifier.{k}": v for k, v in classifier.state_dict().items()})
    torch.save(state, tmp_path / "RNAStrAlign_1mer.pth")
    task, model = load_structure_model(tmp_path / "RNAStrAlign_1mer.pth")
    assert (model.head.channels, model.head.n_blocks, model.head.symmetrize) == (6, 2, "lower")
    sequence = bundled["test"][1].sequence
    from rnaret.tokenizer import encode

    with torch.no_grad():
        tokens = torch.from_numpy(encode(sequence, 1)).unsqueeze(0)
        z = classifier(encoder(tokens, return_logits=False).last_inner_state)[0]
    n = len(sequence)
    expected = torch.sigmoid(torch.where(torch.tril(torch.ones(n, n, dtype=torch.bool), -1), z, z.T)).numpy()
    expected = expected * brute_force_allowed(sequence)
    got = predict_structure(model, [sequence], task=task, precision="fp32")[0]
    np.testing.assert_allclose(got.pair_scores, expected, atol=1e-4)
    fasta = write_fasta(tmp_path / "one.fa", [("seq1", sequence)])
    assert main(["fold", str(fasta), "--checkpoint", str(tmp_path / "RNAStrAlign_1mer.pth"),
                 "--output", str(tmp_path / "one.dbn"), "--quiet", "--precision", "fp32"]) == 0
    assert list(read_structures(tmp_path / "one.dbn"))[0].pairs == got.pairs
    broken = dict(state)
    broken.pop("classifier.conv_out.bias")
    torch.save(broken, tmp_path / "broken.pth")
    assert main(["fold", str(fasta), "--checkpoint", str(tmp_path / "broken.pth"),
                 "--output", str(tmp_path / "none.dbn"), "--quiet"]) == 1
    assert not (tmp_path / "none.dbn").exists()


@pytest.mark.parametrize("case", ["gap", "bad_letter", "duplicate_id", "empty_file", "no_header",
                                  "too_long", "not_a_checkpoint", "bad_threshold", "foreign_folder"])
def test_fold_rejects_bad_input_and_leaves_no_output(work, tmp_path, capsys, case):
    checkpoint = str(work["root"] / "checkpoint")
    good = [("a", "GGGGAAAACCCCUUUU")]
    fasta = tmp_path / "in.fa"
    out = tmp_path / "out.dbn"
    extra: list[str] = []
    expect = case.replace("_", " ")
    if case == "gap":
        write_fasta(fasta, [("a", "GGGG-AAAACCCC")]); expect = "line 2, column 5: '-' at position 5 is an alignment gap"
    elif case == "bad_letter":
        write_fasta(fasta, [("a", "GGGGZAAAACCCC")]); expect = "not an IUPAC"
    elif case == "duplicate_id":
        write_fasta(fasta, good + good); expect = "duplicate id"
    elif case == "empty_file":
        fasta.write_text(""); expect = "empty"
    elif case == "no_header":
        fasta.write_text("GGGGAAAACCCC\n"); expect = "text before"
    elif case == "too_long":
        write_fasta(fasta, good); extra = ["--max-length", "10"]; expect = "longer than --max-length"
    elif case == "not_a_checkpoint":
        write_fasta(fasta, good); checkpoint = str(work["root"] / "encoder"); expect = "fine-tuned checkpoint"
    elif case == "bad_threshold":
        write_fasta(fasta, good); extra = ["--threshold", "1.5"]; expect = "--threshold"
    else:
        write_fasta(fasta, good)
        out = tmp_path / "folder"
        out.mkdir()
        (out / "keep.txt").write_text("precious")
        extra = ["--format", "bpseq"]
        expect = "refusing to replace"
    rc = main(["fold", str(fasta), "--checkpoint", checkpoint, "--output", str(out), "--quiet", *extra])
    err = capsys.readouterr().err
    assert rc == 1
    assert expect in err, err
    if case == "foreign_folder":
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    else:
        assert not out.exists()
    if case in ("gap", "duplicate_id", "too_long"):
        assert "record 'a'" in err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary file was left"


def test_a_dbn_too_knotted_for_its_brackets_says_what_it_left_out(tmp_path, capsys):
    import random

    from rnaret.io.structure import BRACKETS, StructureRecord, read_ct
    from rnaret.tasks.structure import write_structure_files

    n = 1500
    positions = list(range(1, n + 1))
    random.Random(0).shuffle(positions)
    knotted = sorted(tuple(sorted(positions[i:i + 2])) for i in range(0, n, 2))  # 750 random pairs
    records = [StructureRecord("knotted", "A" * n, knotted), StructureRecord("hairpin", "GGGAAACCC", [(1, 9), (2, 8)])]
    write_structure_files(records, tmp_path)
    lines = (tmp_path / "predictions.dbn").read_text().splitlines()
    kept = sum(lines[2].count(opening) for opening, _ in BRACKETS)
    assert 0 < kept < 750
    assert lines[0] == f">knotted pairs_left_out={750 - kept} (all 750 pairs are in predictions.ct and predictions_bpseq/)"
    assert lines[3] == ">hairpin" and lines[5] == "((.....))"
    assert f"{750 - kept} of 750 predicted pairs do not fit" in capsys.readouterr().err
    assert sorted(next(read_ct(tmp_path / "predictions.ct")).pairs) == knotted
