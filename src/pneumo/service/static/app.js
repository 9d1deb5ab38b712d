// pneumo web page: plain JavaScript, no build step, nothing loaded from elsewhere.
// Server data is written with textContent only, never innerHTML.
"use strict";

(() => {
  const API = "/api/v1";
  const KEY_STORE = "pneumo.apiKey";
  const TOKEN_PREFIX = "pnm_";  // an account's API token; anything else is the old shared X-API-Key
  const PAGE_SIZE = 10;
  const $ = (id) => document.getElementById(id);
  const state = { authRequired: false, maxUpload: null, offset: 0, total: 0, previewUrl: null, activeId: null,
    csrf: null };

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  // ---- API -----------------------------------------------------------------------------------------
  const apiKey = () => sessionStorage.getItem(KEY_STORE) || "";

  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    const key = apiKey();
    if (key.startsWith(TOKEN_PREFIX)) headers.set("Authorization", `Bearer ${key}`);
    else if (key) headers.set("X-API-Key", key);
    // The session cookie goes with every request; the CSRF token only with this page's own.
    if (state.csrf && options.method && options.method !== "GET") headers.set("X-CSRF-Token", state.csrf);
    let response;
    try {
      response = await fetch(API + path, { ...options, headers });
    } catch (err) {
      throw new ApiError(0, "The server cannot be reached. Is pneumo serve still running?");
    }
    let body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    if (!response.ok) {
      const message = body && body.error ? body.error.message : `The server answered HTTP ${response.status}.`;
      if (response.status === 401) showLogin(message);
      throw new ApiError(response.status, message);
    }
    return body;
  }

  window.pneumoApi = api;  // for site.js (reviews and site figures): one way to call the API

  // ---- Sign-in, sign-out and API token -------------------------------------------------------------
  function showLogin(message) {
    $("login-panel").hidden = false;
    $("account-bar").hidden = true;
    $("login-status").textContent = message || "";
    $("api-key-status").textContent = apiKey() ? "A token is set for this tab." : "";
    document.dispatchEvent(new CustomEvent("pneumo:session", { detail: null }));  // signed out: no review, no figures
  }

  function showSignedIn(session) {
    state.csrf = session.csrf_token || null;
    $("login-panel").hidden = true;
    $("account-bar").hidden = false;
    $("whoami").textContent = `Signed in as ${session.name} (${session.role})`;
    $("logout").hidden = session.via !== "session";
    document.dispatchEvent(new CustomEvent("pneumo:session", { detail: session }));  // site.js: who may review
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = JSON.stringify({ name: $("login-name").value, password: $("login-password").value });
    $("login-password").value = "";
    try {
      const session = await api("/login", { method: "POST", body, headers: { "Content-Type": "application/json" } });
      showSignedIn({ ...session, via: "session" });
      loadAll();
    } catch (err) {
      $("login-status").textContent = err.message;
    }
  });

  $("logout").addEventListener("click", async () => {
    try { await api("/logout", { method: "POST" }); } catch (err) { showError(err.message); }
    state.csrf = null;
    $("history-list").replaceChildren();
    $("result").hidden = true;
    showLogin("Signed out.");
  });

  $("api-key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("api-key-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(KEY_STORE, value);
    $("api-key-input").value = "";
    $("api-key-status").textContent = "Key set for this tab.";
    start();
  });
  $("api-key-clear").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    $("api-key-status").textContent = "Key forgotten.";
  });

  // ---- Upload --------------------------------------------------------------------------------------
  const dropZone = $("drop-zone");
  $("file-input").addEventListener("change", (event) => {
    const file = event.target.files && event.target.files[0];
    if (file) analyse(file);
    event.target.value = "";  // choosing the same file again still triggers a new analysis
  });
  ["dragenter", "dragover"].forEach((type) => dropZone.addEventListener(type, (event) => {
    event.preventDefault();
    dropZone.classList.add("dragging");
  }));
  ["dragleave", "dragend"].forEach((type) => dropZone.addEventListener(type, () => dropZone.classList.remove("dragging")));
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropZone.classList.remove("dragging");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) analyse(file);
  });
  // A file dropped next to the zone must not make the browser navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  function showPreview(file) {
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = URL.createObjectURL(file);
    const preview = $("preview");
    $("viewer").hidden = false;
    $("stage").classList.remove("overlay-only");
    $("no-preview").hidden = true;
    preview.hidden = false;
    $("overlay").hidden = true;
    $("overlay").removeAttribute("src");
    preview.onerror = () => {  // DICOM: browsers cannot draw it; the overlay will show the decoded image
      preview.hidden = true;
      $("stage").classList.add("overlay-only");
      const hasOverlay = Boolean($("overlay").getAttribute("src"));
      $("no-preview").hidden = hasOverlay;
      if (hasOverlay) {
        $("overlay").hidden = false;
        $("overlay-controls").hidden = true;
        applyOpacity();
      }
    };
    preview.src = state.previewUrl;
    $("overlay-controls").hidden = true;
    const kb = file.size / 1024;
    $("file-line").textContent = `${file.name} · ${kb < 1024 ? kb.toFixed(0) + " KB" : (kb / 1024).toFixed(1) + " MB"}`;
  }

  async function analyse(file) {
    showPreview(file);
    setBusy(true);
    try {
      if (state.maxUpload && file.size > state.maxUpload) {
        throw new ApiError(413, `This file is ${(file.size / 1048576).toFixed(1)} MB; the server accepts up to ` +
          `${(state.maxUpload / 1048576).toFixed(0)} MB.`);
      }
      const form = new FormData();
      form.append("file", file);
      const result = await api("/predict", { method: "POST", body: form });
      renderResult(result);
      state.activeId = result.id;
      loadHistory(0);
    } catch (err) {
      showError(err.message);
    } finally {
      setBusy(false);
    }
  }

  function setBusy(busy) {
    $("busy").hidden = !busy;
    if (busy) {
      $("error-box").hidden = true;
      $("result").hidden = true;
      $("result-empty").hidden = true;
    }
  }

  function showError(message) {
    $("error-box").textContent = message;
    $("error-box").hidden = false;
    $("result").hidden = true;
  }

  // ---- Result --------------------------------------------------------------------------------------
  const percent = (p) => `${(100 * p).toFixed(1)}%`;

  function renderResult(r, fromHistory = false) {
    $("error-box").hidden = true;
    $("result-empty").hidden = true;
    $("result").hidden = false;
    const label = r.label || "UNKNOWN";
    const badge = $("result-label");
    badge.textContent = label;
    badge.className = `badge ${label.toLowerCase()}`;
    const unknown = label === "UNKNOWN" || r.probability === null || r.probability === undefined;
    $("unknown-box").hidden = !unknown;
    $("unknown-reason").textContent = unknown ? (r.unknown_reason || "No reason was given.") : "";
    const ood = !unknown && r.out_of_distribution === true;  // a chest X-ray unlike the training population
    $("ood-box").hidden = !ood;
    $("ood-reason").textContent = ood ? (r.ood_reason || "") : "";
    $("probability").textContent = unknown ? "" : `P(pneumonia) ${percent(r.probability)}`;
    $("confidence").hidden = unknown;
    const threshold = Number(r.threshold);
    if (!unknown) {
      const fill = $("confidence-fill");
      fill.style.width = `${Math.max(0, Math.min(1, r.probability)) * 100}%`;
      fill.className = `fill ${r.probability >= threshold ? "above" : "below"}`;
      $("threshold-marker").style.left = `${threshold * 100}%`;
      $("threshold-label").textContent = `threshold ${percent(threshold)}`;
      const bar = $("confidence-bar");
      bar.setAttribute("aria-valuenow", (100 * r.probability).toFixed(1));
      bar.setAttribute("aria-valuetext", `${percent(r.probability)}, ${r.probability >= threshold ? "at or above" : "below"} the ${percent(threshold)} threshold`);
    }
    renderSubtypes(r.subtype_probabilities);
    $("threshold-value").textContent = Number.isFinite(threshold) ? percent(threshold) : "–";
    const m = r.model || {};  // the bundle's name@hash and its parent (a site bundle)
    $("result-model").textContent = [r.model_version, m.id, m.parent && `from ${m.parent}`].filter(Boolean).join(" · ") || "–";
    document.dispatchEvent(new CustomEvent("pneumo:result", { detail: r }));  // site.js: the review form
    const when = r.created ? new Date(r.created).toLocaleString() : "";
    const ms = r.timing_ms && (r.timing_ms.request || r.timing_ms.analysis || r.timing_ms.total);
    $("result-time").textContent = [when, ms ? `${Math.round(ms)} ms` : ""].filter(Boolean).join(" · ");
    $("result-id").textContent = r.id !== undefined ? `#${r.id}` : "–";
    renderHeatmap(r.heatmap, fromHistory);
  }

  function renderSubtypes(subtypes) {
    const rows = $("subtype-rows");
    rows.replaceChildren();
    $("subtypes").hidden = !subtypes;
    if (!subtypes) return;
    for (const [name, p] of Object.entries(subtypes)) {
      const tr = document.createElement("tr");
      const a = document.createElement("td");
      const b = document.createElement("td");
      a.textContent = name;
      b.textContent = percent(p);
      tr.append(a, b);
      rows.append(tr);
    }
  }

  function renderHeatmap(heatmap, fromHistory) {
    const overlay = $("overlay");
    $("viewer").hidden = false;
    if (fromHistory) {  // the image itself is never stored; the overlay PNG carries the X-ray under the map
      $("preview").hidden = true;
      $("stage").classList.add("overlay-only");
      $("file-line").textContent = "From history: the original image is not stored.";
    }
    if (!heatmap) {
      overlay.hidden = true;
      overlay.removeAttribute("src");
      $("overlay-controls").hidden = true;
      $("no-preview").hidden = !$("preview").hidden;
      if (fromHistory) $("no-preview").textContent = "No heatmap for this analysis.";
      return;
    }
    overlay.src = `data:image/png;base64,${heatmap}`;
    $("no-preview").hidden = true;
    // With no original image underneath (history, DICOM) the overlay PNG is the picture: show it whole.
    const overlayOnly = $("stage").classList.contains("overlay-only");
    overlay.hidden = overlayOnly ? false : !$("heatmap-toggle").checked;
    $("overlay-controls").hidden = overlayOnly;
    applyOpacity();
  }

  function applyOpacity() {
    const value = Number($("opacity").value);
    const overlayOnly = $("stage").classList.contains("overlay-only");
    $("overlay").style.opacity = overlayOnly ? "1" : String(value / 100);
    $("opacity-value").textContent = `${value}%`;
  }
  $("opacity").addEventListener("input", applyOpacity);
  $("heatmap-toggle").addEventListener("change", (event) => {
    $("overlay").hidden = !event.target.checked || !$("overlay").getAttribute("src");
  });

  // ---- History -------------------------------------------------------------------------------------
  async function loadHistory(offset) {
    let page;
    try {
      page = await api(`/history?limit=${PAGE_SIZE}&offset=${offset}`);
    } catch (err) {
      $("history-error").textContent = err.status === 401 ? "Enter the API key to see the history." : err.message;
      $("history-error").hidden = false;
      return;
    }
    $("history-error").hidden = true;
    state.offset = page.offset;
    state.total = page.total;
    const list = $("history-list");
    list.replaceChildren();
    for (const item of page.items) list.append(historyRow(item));
    $("history-empty").hidden = page.total > 0;
    $("history-newer").disabled = page.offset === 0;
    $("history-older").disabled = page.offset + page.items.length >= page.total;
    $("history-page").textContent = page.total ? `${page.offset + 1}–${page.offset + page.items.length} of ${page.total}` : "";
  }

  function historyRow(item) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "history-item" + (item.id === state.activeId ? " active" : "");
    button.dataset.id = String(item.id);
    const label = item.label || "UNKNOWN";
    const badge = document.createElement("span");
    badge.className = `badge ${label.toLowerCase()}`;
    badge.textContent = label;
    const what = document.createElement("span");
    // DICOM node arrivals say where they came from (the sending AE title), uploads their file type.
    const origin = item.source === "dicom"
      ? `DICOM from ${(item.dicom && item.dicom.calling_ae) || "PACS"}` : item.file_type.toUpperCase();
    what.textContent = item.probability === null || item.probability === undefined
      ? `#${item.id} · ${origin}`
      : `#${item.id} · ${percent(item.probability)} · ${origin}`;
    if (item.result && item.result.out_of_distribution === true) {
      const flag = document.createElement("span");
      flag.className = "ood-flag";
      flag.textContent = "OOD";
      flag.title = "A chest X-ray unlike the training population: read the result with caution.";
      what.append(flag);
    }
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = new Date(item.created).toLocaleString();
    button.append(badge, what, when);
    button.addEventListener("click", () => openHistory(item.id));
    li.append(button);
    return li;
  }

  async function openHistory(id) {
    setBusy(true);
    try {
      const entry = await api(`/history/${id}`);
      state.activeId = entry.id;
      renderResult({ ...entry.result, ...entry }, true);
      for (const el of document.querySelectorAll(".history-item")) {
        el.classList.toggle("active", el.dataset.id === String(id));
      }
      // On a phone the list sits below the picture: bring the opened analysis into view.
      if (window.matchMedia("(max-width: 860px)").matches) $("viewer").scrollIntoView({ block: "start" });
    } catch (err) {
      showError(err.message);
    } finally {
      setBusy(false);
    }
  }

  $("history-refresh").addEventListener("click", () => loadHistory(state.offset));
  $("history-newer").addEventListener("click", () => loadHistory(Math.max(0, state.offset - PAGE_SIZE)));
  $("history-older").addEventListener("click", () => loadHistory(state.offset + PAGE_SIZE));

  // ---- Start ---------------------------------------------------------------------------------------
  async function start() {
    let session;
    try {
      session = await api("/session");
    } catch (err) {
      showError(err.message);
      return;
    }
    $("sso").hidden = !session.single_sign_on;
    if (session.signed_in) {
      if (session.via !== "local") showSignedIn(session);
    } else if (session.sign_in_required) {
      showLogin("");
      return;
    }
    loadAll();
  }

  async function loadAll() {
    try {
      // /status, not the open /health: it answers 401 (and api() shows the key panel) when a key is needed.
      const status = await api("/status");
      state.authRequired = status.auth === "on";
      state.maxUpload = status.max_upload_bytes;
    } catch (err) {
      if (err.status === 401) state.authRequired = true;
      else showError(err.message);
    }
    try {
      const model = await api("/model");
      const id = model.identity || {};
      $("model-line").textContent = `Model ${model.arch} ${id.id || ""}${id.parent ? ` (from ${id.parent})` : ""} · ${model.image_size} px · threshold ${percent(model.threshold)}`;
      $("model-line").title = model.version;
      $("intended-use").textContent = `Intended use: ${model.intended_use}`;
    } catch (err) {
      $("model-line").textContent = "Model information unavailable.";
    }
    loadHistory(0);
  }
  start();
})();
