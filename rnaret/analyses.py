"""The paper's analyses (the published ``analysis/*.ipynb``), computed on our models.

Each function returns pandas tables (the figure's data, written as TSV by ``rnaret analyses``)
and each ``plot_*`` draws one figure from those tables only, so that a figure never shows what
its TSV does not hold.

- ``structure_by_family``: per-sequence F1 of a structure evaluation with each record's family
  and length (``family_of``), and the per-family summary (``sspF1.ipynb``).
- ``cls_pca``: CLS states of several encoders on one test split, each projected on its own two
  principal components (scikit-learn PCA; ``rri_rttn.ipynb`` cells 5-7).
- ``cls_retention``: retention of the CLS query on every key position, per head, averaged over
  the pairs of an interaction test split by token index, and one example pair's retention map
  (``rri_rttn.ipynb`` cells 2-4).
- ``transcript_retention``, ``centred_kmers`` and ``count_table``: the head-mean retention map of
  one transcript, its column-mean profile, and the codons / 9-mers centred on the top 1 % of
  profile positions
  (``lnc.ipynb`` cells 1-7).

Retention scores are ``rnaret.model.scores.layer_retention_scores`` (the published normalised
retention matrix, rows = queries, PAD positions zero); the layer is the last one unless told.
torch is imported where a model runs, so that the structure figures need only pandas and matplotlib.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

import numpy as np
import pandas as pd

from rnaret.io.errors import InputError

BPRNA_ID = re.compile(r"bpRNA_([A-Za-z]+)_\d+")
# the published figure's family order (ArchiveII file-name prefixes); other families follow, sorted
ARCHIVE_FAMILIES = ("5s", "16s", "23s", "tRNA", "tmRNA", "grp1", "srp", "RNaseP", "telomerase")
NEGATIVE, POSITIVE = "#1868B2", "#DE582B"  # the published PCA colours


# --------------------------------------------------------------------------- structure

def family_of(record_id: str) -> str:
    """The family of a structure record from its id: the source database of a bpRNA id
    (``bpRNA_RFAM_1234`` -> ``RFAM``), else the text before the first ``_`` (ArchiveII file names:
    ``5s_Acanthamoeba-castellanii-1`` -> ``5s``, as the published notebook reads them); an id
    without ``_`` is its own family."""
    match = BPRNA_ID.fullmatch(record_id)
    if match:
        return match.group(1)
    return record_id.split("_", 1)[0]


def family_order(families: Sequence[str]) -> list[str]:
    """Families in the published order (ArchiveII's), then the others sorted."""
    present = set(families)
    known = [f for f in ARCHIVE_FAMILIES if f in present]
    return known + sorted(present - set(known))


def structure_by_family(predictions: pd.DataFrame, truth: Sequence) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-sequence F1 (``predictions``: the evaluation's predictions.tsv with ``id`` and ``f1``)
    joined to the test records (``truth``: StructureRecord list) -> (per-sequence table: id,
    family, length, n_pairs, f1; per-family table: family, n, mean_f1, median_f1, sd_f1,
    mean_length), families in ``family_order``. Raises InputError for a test record without a
    prediction row."""
    if not {"id", "f1"} <= set(predictions.columns):
        raise InputError(None, f"predictions need 'id' and 'f1' columns, found {list(predictions.columns)}")
    f1 = dict(zip(predictions["id"].astype(str), predictions["f1"].astype(float)))
    rows = []
    for record in truth:
        if record.id not in f1:
            raise InputError(None, "no per-sequence F1 for a test record", record=record.id)
        rows.append({"id": record.id, "family": family_of(record.id), "length": len(record.sequence),
                     "n_pairs": len(record.pairs), "f1": f1[record.id]})
    per_sequence = pd.DataFrame(rows, columns=["id", "family", "length", "n_pairs", "f1"])
    order = family_order(per_sequence["family"])
    summary = (per_sequence.groupby("family")
               .agg(n=("f1", "size"), mean_f1=("f1", "mean"), median_f1=("f1", "median"),
                    sd_f1=("f1", "std"), mean_length=("length", "mean"))
               .reindex(order).reset_index())
    return per_sequence, summary


def plot_family_f1(per_sequence: pd.DataFrame, summary: pd.DataFrame, path, title: str) -> None:
    """Violins of per-sequence F1 by family (published order), each family's mean above it."""
    plt = _pyplot()
    order = list(summary["family"])
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(order) + 2), 4.5))
    data = [per_sequence.loc[per_sequence["family"] == f, "f1"].to_numpy() for f in order]
    positions = np.arange(len(order))
    drawable = [i for i, d in enumerate(data) if len(d) > 1]
    if drawable:
        parts = ax.violinplot([data[i] for i in drawable], positions=positions[drawable], widths=0.6,
                              showextrema=False)
        colours = plt.get_cmap("Set3").colors
        for body, i in zip(parts["bodies"], drawable):
            body.set_facecolor(colours[i % len(colours)])
            body.set_edgecolor("grey")
            body.set_alpha(0.9)
    rng = np.random.default_rng(0)  # horizontal jitter of the points only
    for i, d in enumerate(data):
        ax.scatter(i + rng.uniform(-0.08, 0.08, len(d)), d, s=3, color="black", zorder=3)
        ax.text(i, 1.1, f"{summary['mean_f1'].iloc[i]:.3f}\n(n={len(d)})", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(positions, order)
    ax.set_ylim(0, 1.25)
    ax.set_xlabel("RNA family")
    ax.set_ylabel("F1 score")
    ax.set_title(title)
    _save(fig, path)


def plot_f1_length(per_sequence: pd.DataFrame, path, title: str) -> None:
    """Per-sequence F1 against length with a least-squares line (the published ``regplot``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    x, y = per_sequence["length"].to_numpy(float), per_sequence["f1"].to_numpy(float)
    ax.scatter(x, y, s=4, alpha=0.5)
    if len(np.unique(x)) > 1:
        slope, intercept = np.polyfit(x, y, 1)
        grid = np.linspace(x.min(), x.max(), 100)
        ax.plot(grid, slope * grid + intercept, color="#E29135", lw=1.2,
                label=f"least squares: {slope * 100:+.3f} F1 per 100 nt")
        ax.legend(loc="upper right", fontsize=8)
    ax.grid(True, alpha=0.4)
    ax.set_xlabel("length (nt)")
    ax.set_ylabel("F1 score")
    ax.set_title(title)
    _save(fig, path)


# --------------------------------------------------------------------------- encoders

def _batches(examples, size: int):
    for start in range(0, len(examples), size):
        yield examples[start:start + size]


def cls_states(encoder, task, examples, *, batch_size: int = 64, device="cpu") -> np.ndarray:
    """The CLS state (token 0) of the encoder's last layer before the final norm (what the
    interaction head reads) for each example: float32 (N, d), in the examples' order."""
    import torch

    encoder.eval().to(device)
    out = []
    for chunk in _batches(examples, batch_size):
        batch = task.collate(chunk)
        with torch.no_grad():
            states = encoder(batch.tokens.to(device), padding_mask=batch.padding_mask.to(device),
                             return_logits=False).last_inner_state
        out.append(states[:, 0].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def cls_pca(embeddings: dict[str, np.ndarray], ids: Sequence[str], labels: Sequence[int]
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``{model: (N, d) CLS states}`` -> (points: id, label, model, pc1, pc2; variance: model,
    component, explained_variance_ratio). Each model gets its own PCA fit, as published."""
    from sklearn.decomposition import PCA

    points, variance = [], []
    for model, matrix in embeddings.items():
        if len(matrix) < 3:
            raise InputError(None, f"PCA of {model} needs at least 3 examples, got {len(matrix)}")
        pca = PCA(n_components=2)
        projected = pca.fit_transform(np.asarray(matrix, dtype=np.float64))
        points.append(pd.DataFrame({"id": list(ids), "label": list(labels), "model": model,
                                    "pc1": projected[:, 0], "pc2": projected[:, 1]}))
        variance += [{"model": model, "component": f"PC{i + 1}", "explained_variance_ratio": float(r)}
                     for i, r in enumerate(pca.explained_variance_ratio_)]
    return pd.concat(points, ignore_index=True), pd.DataFrame(variance)


def plot_pca(points: pd.DataFrame, variance: pd.DataFrame, path, title: str) -> None:
    """One PC1/PC2 scatter per model, coloured by label (negative blue, positive orange)."""
    plt = _pyplot()
    models = list(dict.fromkeys(points["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 5), squeeze=False)
    for ax, model in zip(axes[0], models):
        part = points[points["model"] == model]
        ratio = variance[variance["model"] == model]["explained_variance_ratio"].to_numpy()
        for label, colour, name in ((0, NEGATIVE, "Negative"), (1, POSITIVE, "Positive")):
            sel = part[part["label"] == label]
            # the published size (2) for thousands of pairs, larger for a few
            ax.scatter(sel["pc1"], sel["pc2"], s=max(2.0, min(12.0, 4000 / max(len(part), 1))), alpha=0.7,
                       color=colour, label=name)
        ax.set_title(model)
        ax.set_xlabel(f"PC1 ({ratio[0]:.1%})")
        ax.set_ylabel(f"PC2 ({ratio[1]:.1%})")
        ax.legend(title="Interaction", loc="upper right", markerscale=4)
    fig.suptitle(title)
    _save(fig, path)


def last_layer(encoder, layer: int | None) -> int:
    """``layer`` (0-based; negative counts from the end) checked against the encoder; None = last."""
    n = encoder.config.retnet_layers
    index = n - 1 if layer is None else (layer + n if layer < 0 else layer)
    if not 0 <= index < n:
        raise InputError(None, f"layer {layer} out of range: the encoder has {n} layers")
    return index


def retention_maps(encoder, tokens, padding_mask, layer: int, device="cpu"):
    """Retention scores of every head of ``layer`` for a padded batch (tokens (B, L) int64,
    padding_mask (B, L) bool): float32 tensor (B, H, L, L) on CPU (rows = queries; PAD rows and
    columns zero)."""
    import torch

    from rnaret.model.scores import layer_retention_scores

    encoder.eval().to(device)
    tokens, padding_mask = tokens.to(device), padding_mask.to(device)
    with torch.no_grad():
        states = encoder(tokens, padding_mask=padding_mask, return_logits=False, output_hidden_states=True)
    return layer_retention_scores(encoder, states.hidden_states[layer], layer, padding_mask).cpu()


# --------------------------------------------------------------------------- interaction

def pair_token_labels(mirna: str, site: str) -> list[str]:
    """One label per token of an interaction pair at odd k (one token per nucleotide): CLS, the
    miRNA 5'->3', SEP, the site (T read as U)."""
    return ["CLS", *mirna.upper().replace("T", "U"), "SEP", *site.upper().replace("T", "U")]


def cls_retention(encoder, task, examples, *, layer: int | None = None, example_index: int = 0,
                  example_labels: Sequence[str] | None = None, batch_size: int = 64, device="cpu") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Retention of the CLS query (row 0) of ``layer`` on the pairs ``examples`` -> (profile,
    example profile, example map).

    profile: token_index, n_pairs, head_mean, head_1 .. head_H: the CLS row averaged position-wise
    over the pairs long enough to have that token (the published mean is over token indices too,
    across pairs of different lengths; it also averaged the PAD keys, which are left out here
    under either protocol).
    example: token_index, token (``example_labels``, e.g. ``pair_token_labels``; default the
    index), head_mean, head_1 .. head_H of
    ``examples[example_index]`` alone. example map: query, key, score (the head mean, long form)."""
    import torch

    from rnaret.tasks.base import real_positions

    if not examples:
        raise InputError(None, "no interaction pairs to average")
    layer = last_layer(encoder, layer)
    total, count, heads = None, None, None
    example_map = None
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        batch = task.collate(chunk)
        maps = retention_maps(encoder, batch.tokens, batch.padding_mask, layer, device)  # (B, H, L, L)
        # each pair's own tokens: where the model was shown its padding (the published
        # protocol's fixed length, no mask) the PAD keys have scores, but they are not the pair's
        real = real_positions(batch)  # (B, L)
        rows = maps[:, :, 0, :].double() * real[:, None, :]  # (B, H, L): the CLS query
        if total is None:
            heads = rows.shape[1]
            total, count = torch.zeros(heads, 0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
        width = rows.shape[-1]
        if width > total.shape[1]:
            total = torch.nn.functional.pad(total, (0, width - total.shape[1]))
            count = torch.nn.functional.pad(count, (0, width - count.shape[0]))
        total[:, :width] += rows.sum(0)
        count[:width] += real.double().sum(0)
        if start <= example_index < start + len(chunk):
            i = example_index - start
            n = int(real[i].sum())
            example_map = maps[i, :, :n, :n]
    if example_map is None:
        raise InputError(None, f"example index {example_index} out of range: {len(examples)} pairs")
    width = int((count > 0).sum())  # positions no pair reaches (a fixed padded length) are left out
    total, count = total[:, :width], count[:width]
    head_names = [f"head_{h + 1}" for h in range(heads)]
    mean = (total / count.clamp(min=1)).numpy()
    profile = pd.DataFrame({"token_index": np.arange(mean.shape[1]), "n_pairs": count.numpy().astype(int),
                            "head_mean": mean.mean(0), **{h: mean[j] for j, h in enumerate(head_names)}})
    labels = list(example_labels) if example_labels is not None else [str(i) for i in range(example_map.shape[-1])]
    if len(labels) != example_map.shape[-1]:
        raise InputError(None, f"{len(labels)} token labels for an example pair of {example_map.shape[-1]} tokens")
    cls_row = example_map[:, 0, :].double().numpy()
    example = pd.DataFrame({"token_index": np.arange(cls_row.shape[1]), "token": labels[:cls_row.shape[1]],
                            "head_mean": cls_row.mean(0), **{h: cls_row[j] for j, h in enumerate(head_names)}})
    mean_map = example_map.double().mean(0).numpy()
    q, k = np.indices(mean_map.shape)
    long_map = pd.DataFrame({"query": q.ravel(), "key": k.ravel(), "score": mean_map.ravel()})
    return profile, example, long_map


def plot_cls_bars(profile: pd.DataFrame, example: pd.DataFrame, path, title: str, column: str = "head_mean") -> None:
    """Bars of the mean CLS retention (``column``) on the key tokens 1 .. n-1 of the example pair,
    the x axis labelled with the example's bases; dashed lines at 0 and at the SEP token."""
    plt = _pyplot()
    n = len(example)
    values = profile[column].to_numpy()[1:n]
    fig, ax = plt.subplots(figsize=(11, 5))
    x = np.arange(1, n)
    ax.bar(x, values, color=np.where(values >= 0, "#F09BA0", "#9BBBE1"))
    ax.axhline(0, color="grey", linestyle="--", lw=0.8)
    tokens = list(example["token"])
    if "SEP" in tokens:
        ax.axvline(tokens.index("SEP"), color="grey", linestyle="--", lw=0.8)
    ax.set_xticks(x, ["" if t == "SEP" else t for t in tokens[1:n]], fontsize=7)
    ax.set_xlim(0.4, n - 0.4)
    ax.set_ylabel("Retention score of the CLS token")
    ax.set_title(title)
    _save(fig, path)


def plot_retention_map(matrix: np.ndarray, path, title: str, *, limit: float | None = None,
                       separator: int | None = None, profile: np.ndarray | None = None,
                       extent: float | None = None) -> None:
    """A retention heat map (rows = queries, blue-white-red, symmetric colour limits ``limit``,
    default the 99th percentile of |score|), with an optional dashed separator (the SEP token)
    and an optional column profile drawn above it. ``extent``: the axis length in nt when the
    matrix is block-averaged."""
    plt = _pyplot()
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list("retention", ["blue", "white", "red"])
    if limit is None:
        limit = float(np.percentile(np.abs(matrix), 99)) or 1e-6
    size = extent if extent is not None else matrix.shape[0]
    if profile is None:
        fig, ax = plt.subplots(figsize=(6.5, 5.5))
    else:
        # constrained layout: the colorbar takes its width from both panels, so their x axes align
        fig, (top, ax) = plt.subplots(2, 1, figsize=(6.5, 7.5), gridspec_kw={"height_ratios": [1.5, 4]},
                                      sharex=True, layout="constrained")
        top.plot(np.arange(len(profile)), profile, lw=0.5)
        top.set_ylabel("Retention score")
        top.set_xlim(0, size)
    image = ax.imshow(matrix, cmap=cmap, vmin=-limit, vmax=limit, origin="lower",
                      extent=(0, size, 0, size), interpolation="nearest")
    fig.colorbar(image, ax=ax if profile is None else [top, ax], shrink=0.8, label="Retention score")
    if separator is not None:
        for line in (ax.axhline, ax.axvline):
            line(separator + 0.5, color="black", linestyle="--", lw=0.8)
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    (fig.axes[0] if profile is not None else ax).set_title(title)
    _save(fig, path)


# --------------------------------------------------------------------------- coding transcripts

def pick_transcripts(predictions: pd.DataFrame, *, min_length: int, max_length: int) -> dict[str, str]:
    """The transcripts of the retention maps, from a coding evaluation's predictions.tsv (id,
    label, length, score): ``{"mRNA": the highest-scoring coding one, "lncRNA": the lowest-scoring
    noncoding one}`` among those of ``min_length`` .. ``max_length`` nt; when none of a class is in
    that range, among those of the class nearest to it in length (a map is L x L: never the longest
    by chance). Ties: file order. A class the predictions lack is left out of the result; InputError
    when both are absent."""
    need = {"id", "label", "length", "score"}
    if not need <= set(predictions.columns):
        raise InputError(None, f"coding predictions need columns {sorted(need)}, found {list(predictions.columns)}")
    fits = predictions[(predictions["length"] >= min_length) & (predictions["length"] <= max_length)]
    out = {}
    for name, label, best in (("mRNA", 1, "idxmax"), ("lncRNA", 0, "idxmin")):
        part = fits[fits["label"] == label]
        if part.empty:
            part = predictions[predictions["label"] == label]
            if part.empty:
                continue
            distance = (min_length - part["length"]).clip(lower=0) + (part["length"] - max_length).clip(lower=0)
            part = part[distance == distance.min()]
        out[name] = str(part.loc[getattr(part["score"], best)(), "id"])
    if not out:
        raise InputError(None, "no transcripts among the coding predictions")
    return out


def block_mean(matrix: np.ndarray, size: int) -> np.ndarray:
    """``matrix`` (L, L) averaged over square blocks so that it has at most ``size`` rows and
    columns (blocks of ceil(L / size); the last block may be smaller)."""
    n = matrix.shape[0]
    step = max(1, -(-n // size))
    edges = np.arange(0, n, step)
    rows = np.add.reduceat(matrix, edges, axis=0) / np.diff(np.append(edges, n))[:, None]
    return np.add.reduceat(rows, edges, axis=1) / np.diff(np.append(edges, n))[None, :]


def transcript_retention(encoder, tokens: np.ndarray, *, layer: int | None = None, padded_length: int | None = None,
                         device="cpu") -> np.ndarray:
    """The head-mean retention map (L, L) float64 of ``layer`` for one transcript's tokens (L,).

    ``padded_length``: the task's fixed input length where its model was shown padding
    (``Task.padded_length``, the published protocol): the transcript is read so padded, as in
    evaluation, and the map is cut back to its own L tokens."""
    from rnaret.tasks.base import pad_tokens

    layer = last_layer(encoder, layer)
    tokens = np.asarray(tokens, dtype=np.int64)
    batch, visible = pad_tokens([tokens], padded_length, masked=False)
    maps = retention_maps(encoder, batch, visible, layer, device)
    return maps[0, :, :len(tokens), :len(tokens)].double().mean(0).numpy()


def retention_profile(matrix: np.ndarray) -> np.ndarray:
    """Per key position, the mean retention over all query rows (``lnc.ipynb``'s line profile)."""
    return matrix.mean(axis=0)


def centred_kmers(sequence: str, profile: np.ndarray, *, percentile: float = 99.0
                  ) -> tuple[list[str], list[str]]:
    """Codons and 9-mers centred on the positions whose profile value is at least the
    ``percentile``-th percentile of the profile (positions 4 .. n-5, 0-based, so that the 9-mer
    fits), as ``lnc.ipynb`` counts them: (codons seq[i-1:i+2], 9-mers seq[i-4:i+5]), T as U."""
    sequence = sequence.upper().replace("T", "U")
    profile = np.asarray(profile)[:len(sequence)]
    threshold = np.percentile(profile, percentile)
    codons, nines = [], []
    for i in np.flatnonzero(profile >= threshold):
        if 3 < i < len(sequence) - 4:
            codons.append(sequence[i - 1:i + 2])
            nines.append(sequence[i - 4:i + 5])
    return codons, nines


def first_of_each_class(examples: Sequence, limit: int) -> list:
    """The first ``limit`` examples of each label, in file order (all when ``limit`` is 0): a
    test file that lists its coding transcripts first still gives both classes' counts."""
    if limit <= 0:
        return list(examples)
    taken: Counter = Counter()
    chosen = []
    for example in examples:
        label = example.info["label"]
        if taken[label] < limit:
            taken[label] += 1
            chosen.append(example)
    return chosen


def count_table(counts: dict[str, Counter], key: str) -> pd.DataFrame:
    """``{class: Counter}`` -> key, count_<class> ..., count_all, frequency_all (count / total),
    sorted by count_all descending then key."""
    keys = sorted(set().union(*counts.values()))
    table = pd.DataFrame({key: keys, **{f"count_{c}": [counts[c][k] for k in keys] for c in counts}})
    table["count_all"] = table[[f"count_{c}" for c in counts]].sum(axis=1)
    total = table["count_all"].sum()
    table["frequency_all"] = table["count_all"] / total if total else 0.0
    return table.sort_values(["count_all", key], ascending=[False, True]).reset_index(drop=True)


def plot_codons(codons: pd.DataFrame, path, title: str, top: int = 30) -> None:
    """Horizontal bars of the ``top`` codons' frequency per class, with the uniform 1/64 line."""
    plt = _pyplot()
    head = codons.head(top).iloc[::-1]
    classes = [c[len("count_"):] for c in codons.columns if c.startswith("count_") and c != "count_all"]
    fig, ax = plt.subplots(figsize=(5.5, 8))
    y = np.arange(len(head))
    colours = {"pc": "skyblue", "lnc": "red"}
    for j, cls in enumerate(classes):
        total = codons[f"count_{cls}"].sum()
        freq = head[f"count_{cls}"] / total if total else head[f"count_{cls}"] * 0.0
        ax.barh(y + (j - (len(classes) - 1) / 2) * 0.4, freq, height=0.4, label=cls,
                color=colours.get(cls), alpha=0.5 if cls == "lnc" else 1.0)
    ax.axvline(1 / 64, color="green", linestyle="--", label="uniform (1/64)")
    ax.set_yticks(y, head["codon"])
    ax.set_xlabel("frequency among high-retention codons")
    ax.set_title(title)
    ax.legend(loc="lower right")
    _save(fig, path)


def plot_absent(path, message: str) -> None:
    """A figure that says why there is nothing to draw (e.g. a test split without lncRNAs)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 2))
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    _save(fig, path)


# --------------------------------------------------------------------------- plotting helpers

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    from rnaret.io.atomic import atomic_path

    if fig.get_layout_engine() is None:
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, format="png")
    _pyplot().close(fig)
