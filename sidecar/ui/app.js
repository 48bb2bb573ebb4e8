// The playground: three modes over the sidecar's own API. Plain JavaScript, no build step.
// Every URL is relative to /ui/, so the page also works behind a path prefix.
"use strict";

const LYCHEE_INSTRUCTION =
  "Given a web search query, retrieve relevant passages that answer the query.";
const ECOMMERCE_INSTRUCTION =
  "Given an e-commerce search query, rank product titles by their relevance to the user's need.";
const SETTINGS_KEY = "rerank-playground:settings";
const MAX_BATCH = 50;
const API = { readyz: "../readyz", search: "../search", rerank: "../api/rerank", explain: "../api/explain" };

const $ = (id) => document.getElementById(id);

// ---- settings, remembered in localStorage ---------------------------------------------------

function loadSettings() {
  const defaults = { instruction: LYCHEE_INSTRUCTION, rules: "default", window: 30, tab: "single" };
  try {
    return { ...defaults, ...JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}") };
  } catch {
    return defaults;
  }
}

const settings = loadSettings();

function saveSettings() {
  try {
    localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
  } catch {
    // storage may be disabled; the page still works, it just forgets
  }
}

function initSettings() {
  const instruction = $("instruction");
  instruction.value = settings.instruction;
  instruction.addEventListener("input", () => {
    settings.instruction = instruction.value;
    saveSettings();
  });
  const setInstruction = (text) => {
    instruction.value = text;
    settings.instruction = text;
    saveSettings();
  };
  $("instruction-default").addEventListener("click", () => setInstruction(LYCHEE_INSTRUCTION));
  $("instruction-ecommerce").addEventListener("click", () => setInstruction(ECOMMERCE_INSTRUCTION));
  // The rules variant appears in the search form and in the advanced settings: one value.
  const rulesInputs = document.querySelectorAll(".rules-input");
  for (const input of rulesInputs) {
    input.value = settings.rules;
    input.addEventListener("input", () => {
      settings.rules = input.value;
      for (const other of rulesInputs) if (other !== input) other.value = input.value;
      saveSettings();
    });
  }
  const windowInput = $("search-window");
  windowInput.value = settings.window;
  windowInput.addEventListener("input", () => {
    settings.window = Number(windowInput.value) || 30;
    saveSettings();
  });
}

function currentInstruction() {
  return settings.instruction.trim() || LYCHEE_INSTRUCTION;
}

// ---- tabs: click, or arrow keys / Home / End on the tab list ---------------------------------

const TABS = ["single", "batch", "search"];

function selectTab(name, focus) {
  for (const tab of TABS) {
    const button = $(`tab-${tab}`);
    const active = tab === name;
    button.setAttribute("aria-selected", String(active));
    button.tabIndex = active ? 0 : -1;
    $(`panel-${tab}`).hidden = !active;
    if (active && focus) button.focus();
  }
  settings.tab = name;
  saveSettings();
}

function initTabs() {
  for (const tab of TABS) {
    $(`tab-${tab}`).addEventListener("click", () => selectTab(tab, false));
  }
  document.querySelector("[role=tablist]").addEventListener("keydown", (event) => {
    const at = TABS.indexOf(settings.tab);
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: TABS.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    selectTab(TABS[(to + TABS.length) % TABS.length], true);
  });
  selectTab(TABS.includes(settings.tab) ? settings.tab : "single", false);
}

// ---- readiness: poll /readyz, show loading progress or the reason the model is unavailable ---

let modelName = "";

async function pollReady() {
  let delay = 1000;
  try {
    const response = await fetch(API.readyz, { cache: "no-store" });
    const body = await response.json();
    const warming = body.model && body.model.warmup && body.model.warmup.state === "running";
    delay = showReadiness(body) && !warming ? 10000 : 1000;
  } catch {
    showBanner("The sidecar does not answer. Retrying…", "down");
    $("status").textContent = "sidecar unreachable";
  }
  setTimeout(pollReady, delay);
}

// Returns whether everything is ready (then polling slows down).
function showReadiness(body) {
  const model = body.model || {};
  const engine = body.engine || {};
  modelName = model.model || "";
  // What the scorer reads: a query in another script keeps the engine's order (and says so).
  const reads = (model.languages || []).filter((code) => code !== "*");
  const readsText = reads.length ? ` It reads ${reads.join(", ")}.` : "";
  for (const note of document.querySelectorAll(".model-note")) {
    note.textContent = modelName ? `The sidecar runs ${modelName}.${readsText}` : "";
  }
  const parts = [`model ${model.model || "?"}${reads.length ? ` (${reads.join(", ")})` : ""}: ${model.status || "?"}`];
  parts.push(`engine ${engine.kind || "?"}: ${engine.ready ? "up" : "down"}`);
  if (body.cache) parts.push(`cache ${body.cache.kind}: ${body.cache.ready ? "up" : "down"}`);
  const warm = model.warmup || {};
  if (warm.state === "running" && warm.total) {
    // The embedded catalog is encoded in the background: searches work, cold ones are slower.
    parts.push(`warming the catalog ${warm.done}/${warm.total}`);
  }
  $("status").textContent = parts.join(" · ");
  document.body.dataset.model = model.status || "unknown";
  if (model.status === "loading") {
    const pct = Math.round((model.progress || 0) * 100);
    showBanner(`Model ${model.model} is loading: ${pct}%. Requests that need scores wait until it is ready.`,
      "loading", model.progress || 0);
    return false;
  }
  if (model.status === "failed" || (!model.ready && model.status !== "ready")) {
    showBanner(`Model ${model.model} is not available: ${model.reason || model.status}. ` +
      "Search still answers in the engine's order.", "failed");
    return false;
  }
  if (!engine.ready) {
    showBanner(`Engine ${engine.kind} is not reachable: search preview will fail until it is back.`, "down");
    return false;
  }
  hideBanner();
  return true;
}

function showBanner(text, kind, progress) {
  const banner = $("banner");
  banner.hidden = false;
  banner.dataset.kind = kind;
  banner.setAttribute("role", kind === "loading" ? "status" : "alert");
  $("banner-text").textContent = text;
  const bar = $("banner-progress");
  bar.hidden = progress === undefined;
  if (progress !== undefined) bar.value = progress;
}

function hideBanner() {
  $("banner").hidden = true;
}

// ---- requests: one at a time per mode, with a spinner and Cancel -----------------------------

class ApiError extends Error {
  constructor(status, body) {
    const field = body && body.field ? ` (field: ${body.field})` : "";
    const message = (body && (body.message || body.error)) || `HTTP ${status}`;
    super(`${status}: ${message}${field}`);
    this.status = status;
    this.body = body;
  }
}

const running = {};

async function call(mode, url, payload) {
  if (running[mode]) running[mode].abort();
  const controller = new AbortController();
  running[mode] = controller;
  const busy = $(`${mode}-busy`);
  const error = $(`${mode}-error`);
  error.hidden = true;
  busy.hidden = false;
  busy.querySelector(".cancel").onclick = () => controller.abort();
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(payload),
      signal: controller.signal,
    });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  } finally {
    if (running[mode] === controller) {
      running[mode] = null;
      busy.hidden = true;
    }
  }
}

function showError(mode, err) {
  const box = $(`${mode}-error`);
  box.hidden = false;
  if (err.name === "AbortError") {
    if (running[mode]) return; // replaced by a newer request of the same mode, not cancelled
    box.dataset.kind = "cancelled";
    box.textContent = "Cancelled.";
    return;
  }
  box.dataset.kind = err.status ? String(err.status) : "network";
  const what = {
    422: "The request was refused",
    503: "Unavailable",
    504: "Too slow",
    429: "Overloaded, retry soon",
  }[err.status] || "Failed";
  box.textContent = `${what}: ${err.message}`;
}

function formSubmit(form, handler) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    handler();
  });
  // Ctrl+Enter (or Cmd+Enter) submits from a textarea too.
  form.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
}

// ---- images: upload -> base64 data URL, or a URL -----------------------------------------------

const uploads = {};

function initImageInputs() {
  for (const box of document.querySelectorAll(".image-input")) {
    const prefix = box.dataset.prefix;
    const file = $(`${prefix}-file`);
    const url = $(`${prefix}-url`);
    const preview = $(`${prefix}-preview`);
    file.addEventListener("change", () => {
      const chosen = file.files && file.files[0];
      if (!chosen) {
        delete uploads[prefix];
        preview.hidden = true;
        return;
      }
      const reader = new FileReader();
      reader.onload = () => {
        uploads[prefix] = String(reader.result);
        url.value = "";
        preview.src = uploads[prefix];
        preview.hidden = false;
      };
      reader.readAsDataURL(chosen);
    });
    url.addEventListener("input", () => {
      if (url.value.trim()) {
        delete uploads[prefix];
        file.value = "";
        preview.src = url.value.trim();
        preview.hidden = false;
      } else if (!uploads[prefix]) {
        preview.hidden = true;
      }
    });
  }
}

// A query: plain text, or {text, image_url | image_base64} when an image is given.
function queryFrom(prefix, text) {
  const upload = uploads[prefix];
  const urlInput = $(`${prefix}-url`);
  const url = urlInput ? urlInput.value.trim() : "";
  if (!upload && !url) return text;
  const query = {};
  if (text) query.text = text;
  if (upload) query.image_base64 = upload;
  else query.image_url = url;
  return query;
}

// ---- formatting ----------------------------------------------------------------------------

const fmt = (x) => (x === null || x === undefined ? "–" : Number(x).toFixed(3));

// Lychee Rerank MM's reading of a score; the API's own band is shown where it gives one.
function bandOf(score) {
  if (score >= 0.75) return "strong";
  if (score >= 0.55) return "medium";
  return "weak";
}

function bandChip(band) {
  const chip = document.createElement("span");
  chip.className = `band band-${band}`;
  chip.textContent = band;
  return chip;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---- mode 1: single analysis ---------------------------------------------------------------

async function runSingle() {
  const text = $("single-query").value.trim();
  const title = $("single-title").value.trim();
  const points = $("single-points").value.split("\n").map((s) => s.trim()).filter(Boolean);
  const productImage = uploads["single-image"] || $("single-image-url").value.trim() || null;
  const payload = {
    query: queryFrom("single-query", text),
    product: { title, selling_points: points, image_url: productImage },
    instruction: currentInstruction(),
  };
  $("single-result").hidden = true;
  try {
    renderSingle(await call("single", API.explain, payload), title, points);
  } catch (err) {
    showError("single", err);
  }
}

function renderSingle(body, title, points) {
  $("single-score").textContent = fmt(body.score);
  const band = $("single-band");
  band.className = `band band-${body.band}`;
  band.textContent = body.band;
  const flags = $("single-flags");
  flags.hidden = !(body.flags && body.flags.length);
  flags.textContent = flags.hidden ? "" : `Scored on text only: ${body.flags.join("; ")}`;
  const byKey = new Map(body.fragments.map((f) => [`${f.kind}:${f.index}`, f]));
  const top = Math.max(1e-6, ...body.fragments.map((f) => Math.abs(f.delta)));

  const paint = (node, fragment) => {
    if (!fragment) return;
    const strength = Math.min(1, Math.abs(fragment.delta) / top);
    node.classList.add(fragment.delta >= 0 ? "up" : "down");
    node.style.setProperty("--strength", strength.toFixed(3));
    node.dataset.delta = fragment.delta.toFixed(3);
    node.title = `${fragment.delta >= 0 ? "+" : ""}${fragment.delta.toFixed(3)} when left out: ${fmt(fragment.score_without)}`;
  };
  const words = $("single-title-words");
  words.replaceChildren();
  title.split(/\s+/).filter(Boolean).forEach((word, i) => {
    const span = el("span", "frag", word);
    paint(span, byKey.get(`title_word:${i}`));
    words.append(span, " ");
  });
  const list = $("single-points-out");
  list.replaceChildren();
  points.forEach((point, i) => {
    const item = el("li", "frag", point);
    paint(item, byKey.get(`selling_point:${i}`));
    list.append(item);
  });
  const rows = body.fragments.map((f) => {
    const tr = el("tr");
    tr.append(el("td", "", f.text), el("td", "", f.kind.replace("_", " ")),
      el("td", f.delta >= 0 ? "num up-text" : "num down-text", `${f.delta >= 0 ? "+" : ""}${f.delta.toFixed(3)}`),
      el("td", "num", fmt(f.score_without)));
    return tr;
  });
  $("single-fragments").tBodies[0].replaceChildren(...rows);
  $("single-fragments").hidden = rows.length === 0;
  $("single-result").hidden = false;
}

// ---- mode 2: batch rerank ------------------------------------------------------------------

// Lines -> documents; JSON lines give {text, image_url}. Throws with the line number.
function parseBatch(raw) {
  const lines = raw.split("\n").map((s) => s.trim()).filter(Boolean);
  if (lines.length === 0) throw new Error("add at least one product, one per line");
  if (lines.length > MAX_BATCH) throw new Error(`${lines.length} products; at most ${MAX_BATCH}`);
  return lines.map((line, i) => {
    if (!line.startsWith("{")) return line;
    let doc;
    try {
      doc = JSON.parse(line);
    } catch (e) {
      throw new Error(`line ${i + 1}: not valid JSON (${e.message})`);
    }
    if (!doc || (typeof doc.text !== "string" && typeof doc.image_url !== "string")) {
      throw new Error(`line ${i + 1}: a JSON line needs "text" and/or "image_url"`);
    }
    const out = {};
    if (typeof doc.text === "string") out.text = doc.text;
    if (typeof doc.image_url === "string") out.image_url = doc.image_url;
    return out;
  });
}

let batchRows = [];

async function runBatch() {
  $("batch-result").hidden = true;
  let documents;
  try {
    documents = parseBatch($("batch-docs").value);
  } catch (err) {
    const box = $("batch-error");
    box.hidden = false;
    box.dataset.kind = "input";
    box.textContent = `Check the list: ${err.message}`;
    return;
  }
  const payload = { query: $("batch-query").value.trim(), documents, instruction: currentInstruction() };
  try {
    renderBatch(await call("batch", API.rerank, payload));
  } catch (err) {
    showError("batch", err);
  }
}

function movedText(from, to) {
  if (from === to) return `= #${from}`;
  return from > to ? `▲${from - to} from #${from}` : `▼${to - from} from #${from}`;
}

function renderBatch(body) {
  batchRows = body.results.map((r, i) => {
    const doc = r.document;
    const text = typeof doc === "string" ? doc : [doc.text, doc.image_url].filter(Boolean).join(" ");
    return { rank: i + 1, from: r.index + 1, score: r.score, band: r.band || bandOf(r.score), text };
  });
  const rows = batchRows.map((row) => {
    const tr = el("tr");
    const band = el("td");
    band.append(bandChip(row.band));
    const moved = el("td", row.from > row.rank ? "up-text" : row.from < row.rank ? "down-text" : "", movedText(row.from, row.rank));
    tr.append(el("td", "num", String(row.rank)), el("td", "num score", fmt(row.score)), band, moved, el("td", "doc", row.text));
    return tr;
  });
  $("batch-table").tBodies[0].replaceChildren(...rows);
  $("batch-copied").textContent = `${rows.length} products, model ${body.model}`;
  $("batch-csv").hidden = true;
  $("batch-result").hidden = false;
}

function csvCell(value) {
  const text = String(value);
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function batchCsv() {
  const lines = [["rank", "score", "band", "moved_from", "product"].join(",")];
  for (const row of batchRows) {
    lines.push([row.rank, fmt(row.score), row.band, row.from, row.text].map(csvCell).join(","));
  }
  return lines.join("\n") + "\n";
}

async function copyCsv() {
  const csv = batchCsv();
  const area = $("batch-csv");
  area.value = csv;
  try {
    await navigator.clipboard.writeText(csv);
    $("batch-copied").textContent = `Copied ${batchRows.length} rows as CSV.`;
  } catch {
    // No clipboard access (permissions, insecure origin): show the CSV selected for Ctrl+C.
    area.hidden = false;
    area.focus();
    area.select();
    $("batch-copied").textContent = "Clipboard not available: the CSV is selected below, press Ctrl+C.";
  }
}

// ---- mode 3: search preview ----------------------------------------------------------------

async function runSearch() {
  $("search-result").hidden = true;
  const win = Math.max(1, Math.min(200, Number($("search-window").value) || 30));
  const payload = {
    query: queryFrom("search-query", $("search-query").value.trim()),
    window: win,
    size: Math.min(win, 100),
    explain: true,
    rules: settings.rules.trim() || "default",
    instruction: currentInstruction(),
  };
  try {
    renderSearch(await call("search", API.search, payload));
  } catch (err) {
    showError("search", err);
  }
}

// One product in a search column; `position` is its place in that column (1-based).
function hitCard(hit, position, showMove) {
  const li = el("li", "hit");
  li.dataset.id = hit.id;
  li.append(el("span", "rank", `#${position}`));
  const source = hit.source || {};
  if (source.image_url) {
    const img = el("img", "hit-img");
    img.src = source.image_url; // demo images are "images/x.png", served at /ui/images/
    img.alt = "";
    img.loading = "lazy";
    li.append(img);
  }
  const body = el("div", "hit-body");
  body.append(el("div", "hit-title", source.title || hit.id));
  const meta = el("div", "hit-meta");
  meta.append(el("span", "score", fmt(hit.score)));
  if (hit.model_score !== null && hit.model_score !== undefined) {
    meta.append(el("span", "", `model ${fmt(hit.model_score)}`));
  }
  meta.append(bandChip(hit.band));
  if (showMove && hit.explain) {
    const from = hit.explain.engine_rank;
    const cls = from > position ? "up-text" : from < position ? "down-text" : "";
    meta.append(el("span", `moved ${cls}`, movedText(from, position)));
  }
  meta.append(el("span", "hit-id", hit.id));
  body.append(meta);
  const rules = (hit.explain && hit.explain.rules) || [];
  if (rules.length) {
    const fired = el("div", "rules");
    for (const rule of rules) fired.append(el("span", "rule", `${rule.rule} (${rule.kind}${rule.effect ? ": " + rule.effect : ""})`));
    body.append(fired);
  }
  if (hit.flags && hit.flags.length) body.append(el("div", "flags", hit.flags.join("; ")));
  li.append(body);
  return li;
}

function renderSearch(body) {
  const scored = body.hits.filter((h) => h.explain);
  const engineOrder = [...scored].sort((a, b) => a.explain.engine_rank - b.explain.engine_rank);
  // Engine ranks keep their gaps where the rules dropped a hit.
  $("search-engine").replaceChildren(...engineOrder.map((h) => hitCard(h, h.explain.engine_rank, false)));
  $("search-reranked").replaceChildren(...body.hits.map((h, i) => hitCard(h, body.from + i + 1, true)));
  const status = body.rerank_status === "ok" ? "reranked" : `${body.rerank_status}: ${body.reason}`;
  $("search-summary").textContent =
    `${body.total} matches · window ${body.window} · ${body.dropped} dropped by rules (not shown) · ` +
    `${status} · ${body.engine} · ${body.model} · rules ${body.rules_version} · ` +
    `${Math.round(body.timings.total_ms)} ms · cache ${body.cache.status} (${body.cache.hits} hits)`;
  $("search-result").hidden = false;
}

// ---- start ----------------------------------------------------------------------------------

function init() {
  initSettings();
  initTabs();
  initImageInputs();
  formSubmit($("single-form"), runSingle);
  formSubmit($("batch-form"), runBatch);
  formSubmit($("search-form"), runSearch);
  $("batch-copy").addEventListener("click", copyCsv);
  pollReady();
}

document.addEventListener("DOMContentLoaded", init);
