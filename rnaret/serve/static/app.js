// The rnaret serve page: submit sequences to /api/jobs, poll the job, show its results.
// Plain DOM code, no libraries; user text is only ever set as textContent (never as HTML).
"use strict";

const EXAMPLE = ">yeast_tRNA_Phe\nGCGGAUUUAGCUCAGUUGGGAGAGCGCCAGACUGAAGAUCUGGAGGUCCUGUGUUCGAUCCACAGAAUUCGCACCA\n";
const POLL_MS = 400;
let currentJob = null;  // URL of the job shown, deleted when the next one starts or the page closes
let serverInfo = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setBusy(busy) {
  $("submit-button").disabled = busy;
  $("submit-button").textContent = busy ? "Working…" : "Predict";
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    return JSON.stringify(body.detail);
  } catch (e) {
    return `the server answered ${response.status} ${response.statusText}`;
  }
}

async function loadInfo() {
  try {
    const response = await fetch("/api/info");
    if (!response.ok) return;
    serverInfo = await response.json();
  } catch (e) {
    return;
  }
  const l = serverInfo.limits;
  $("limits").textContent =
    `Up to ${l.max_sequences} sequences and ${l.max_total_length.toLocaleString()} nt per request ` +
    `(${l.max_request_bytes.toLocaleString()} bytes); structures for sequences up to ` +
    `${l.max_structure_length.toLocaleString()} nt. Results are kept ${Math.round(serverInfo.job_ttl_s / 60)} minutes.`;
  const stages = serverInfo.stages;
  const parts = [];
  if (stages.structure) parts.push(`structure model: ${stages.structure.checkpoint} (k=${stages.structure.k})`);
  if (stages.coding) parts.push(`coding model: ${stages.coding.checkpoint} (k=${stages.coding.k})`);
  if (stages.embed) parts.push(`embeddings: ${stages.embed.checkpoint}`);
  $("models").textContent = parts.join(" · ");
  if (!stages.embed) {
    $("opt-embeddings").checked = false;
    $("opt-embeddings-label").hidden = true;
    $("opt-embed-row").hidden = true;
  }
}

async function dropCurrentJob() {
  if (!currentJob) return;
  const url = currentJob;
  currentJob = null;
  try { await fetch(url, { method: "DELETE", keepalive: true }); } catch (e) { /* already gone */ }
}

async function submit(event) {
  event.preventDefault();
  showError("");
  const file = $("file-input").files[0];
  const text = $("sequence-input").value;
  if (!file && !text.trim()) {
    showError("Paste a sequence (FASTA) or choose a FASTA file first.");
    return;
  }
  setBusy(true);
  await dropCurrentJob();
  $("results").replaceChildren();
  const vienna = $("opt-vienna").checked;
  const embeddings = $("opt-embeddings").checked;
  // the rnaret embed choices; the server checks them (the same messages as the command line)
  const layers = $("opt-layers").value.trim() || "last";
  const pool = $("opt-pool").value;
  const retention = $("opt-retention").value.trim() || null;
  let request;
  if (file) {
    const form = new FormData();
    form.append("file", file);
    form.append("vienna", vienna);
    form.append("embeddings", embeddings);
    form.append("layers", layers);
    form.append("pool", pool);
    if (retention) form.append("retention", retention);
    request = fetchJson("/api/jobs/upload", { method: "POST", body: form }, "Could not reach the server");
  } else {
    request = fetchJson("/api/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ fasta: text, vienna, embeddings, layers, pool, retention }),
    }, "Could not reach the server");
  }
  const job = await request;
  if (!job) return;
  currentJob = job.url;
  poll(job);
}

// The JSON body of fetch(url, options); null when the server cannot be reached (the message
// says `unreachable` and why) or answers an error (its message shown), the page no longer busy.
async function fetchJson(url, options, unreachable) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (e) {
    setBusy(false);
    showError(`${unreachable} (${e.message}).`);
    return null;
  }
  if (!response.ok) {
    setBusy(false);
    showError(await errorMessage(response));
    return null;
  }
  return response.json();
}

function showProgress(job) {
  $("progress-box").hidden = false;
  $("progress").value = job.progress.fraction;
  const state = job.status === "queued" ? "waiting for a free worker" : job.status;
  $("progress-text").textContent =
    `${job.progress.done} of ${job.progress.total} steps (${job.n_sequences} sequence${job.n_sequences === 1 ? "" : "s"}) – ${state}`;
}

async function poll(job) {
  showProgress(job);
  if (job.status === "done") {
    setBusy(false);
    render(job);
    return;
  }
  await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  if (currentJob !== job.url) return;  // a newer job replaced this one
  const next = await fetchJson(job.url, {}, "Lost contact with the server");
  if (next) poll(next);
}

function figure(src, alt, caption, cls) {
  return el("figure", {}, el("img", { src, alt, class: cls, loading: "lazy" }), el("figcaption", { text: caption }));
}

function pad(label, width) {
  return label + " ".repeat(Math.max(1, width - label.length));
}

function render(job) {
  const results = $("results");
  results.replaceChildren();
  for (const r of job.results) results.append(renderSequence(r));
}

function renderSequence(r) {
  const card = el("article", { class: "result", "data-index": String(r.index), "data-id": r.id });
  card.append(el("h2", {}, r.id + " ", el("span", { class: "meta", text: `${r.length.toLocaleString()} nt` })));
  if (r.notes.length) card.append(el("ul", { class: "notes" }, ...r.notes.map((n) => el("li", { text: n }))));

  if (r.structure || r.vienna) {
    card.append(el("h3", { text: "Secondary structure" }));
    const lines = [pad("sequence", 12) + r.sequence];
    if (r.structure) lines.push(pad("RNAret", 12) + r.structure.dot_bracket + `  ${r.structure.n_pairs} pairs`);
    if (r.vienna) lines.push(pad("ViennaRNA", 12) + r.vienna.dot_bracket + `  ${r.vienna.energy.toFixed(2)} kcal/mol`);
    card.append(el("pre", { class: "alignment", text: lines.join("\n") }));
    const figures = el("div", { class: "figures" });
    if (r.structure) {
      const hidden = r.structure.n_pairs - r.structure.drawn_pairs;
      figures.append(figure(r.structure.drawing_url, "RNAret model structure drawing",
        `RNAret model: ${r.structure.n_pairs} pairs` + (hidden ? ` (${hidden} pseudoknotted not drawn)` : ""),
        "structure-drawing model-drawing"));
    }
    if (r.vienna) {
      figures.append(figure(r.vienna.drawing_url, "ViennaRNA MFE structure drawing",
        `ViennaRNA MFE: ${r.vienna.energy.toFixed(2)} kcal/mol`, "structure-drawing vienna-drawing"));
    }
    if (r.structure) {
      figures.append(figure(r.structure.heatmap_url, "pair-score heat map",
        `pair scores (max ${r.structure.max_pair_score.toFixed(2)})`, "heatmap"));
    }
    card.append(figures);
  }

  if (r.coding) {
    card.append(el("h3", { text: "Coding potential" }));
    card.append(el("p", { class: "coding-summary" }, "coding probability ",
      el("strong", { text: r.coding.probability.toFixed(3) }), " — ",
      el("span", { class: r.coding.prediction, text: r.coding.prediction }),
      ` (best ${r.coding.window}-nt window starts at ${r.coding.window_start})`));
    card.append(el("img", { class: "coding-plot", src: r.coding.plot_url, alt: "per-position CDS probability plot" }));
  }

  if (r.downloads.length) {
    card.append(el("h3", { text: "Downloads" }));
    card.append(el("ul", { class: "downloads" }, ...r.downloads.map((d) =>
      el("li", {}, el("a", { class: "download", href: d.url, download: "", title: d.description,
                             "data-name": d.name, text: d.name })))));
  }
  return card;
}

function init() {
  $("input-form").addEventListener("submit", submit);
  $("example-button").addEventListener("click", () => {
    $("sequence-input").value = EXAMPLE;
    $("file-input").value = "";
  });
  $("clear-button").addEventListener("click", async () => {
    $("sequence-input").value = "";
    $("file-input").value = "";
    showError("");
    $("results").replaceChildren();
    $("progress-box").hidden = true;
    await dropCurrentJob();
  });
  window.addEventListener("pagehide", () => { dropCurrentJob(); });
  loadInfo();
}

document.addEventListener("DOMContentLoaded", init);
