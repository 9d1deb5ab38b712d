// pneumo web page: the reading clinician's review of a result, and the site's figures (admins and clinicians).
// Uses app.js's API helper (window.pneumoApi); server data is written with textContent only, never innerHTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const REVIEWERS = ["admin", "clinician"];
  const NAMES = { NORMAL: "Normal", PNEUMONIA: "Pneumonia", PNEUMONIA_BACTERIAL: "Pneumonia, bacterial",
    PNEUMONIA_VIRAL: "Pneumonia, viral", NOT_ASSESSABLE: "Not assessable" };
  let analysisId = null;
  let mayReview = false;

  function describe(review) {
    if (!review) return "Not reviewed yet.";
    const when = new Date(review.created).toLocaleString();
    return `Latest review: ${NAMES[review.label] || review.label} by ${review.reviewer}, ${when}` +
      (review.note ? ` — ${review.note}` : "");
  }

  document.addEventListener("pneumo:result", (event) => {
    const r = event.detail;
    analysisId = r.id === undefined ? null : r.id;
    $("review-form").hidden = !mayReview || analysisId === null;
    $("review-current").textContent = describe(r.review);
    $("review-status").textContent = "";
    $("review-label").value = "";
    $("review-note").value = "";
  });

  $("review-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (analysisId === null || !$("review-label").value) return;
    const body = { label: $("review-label").value, note: $("review-note").value || null };
    try {
      const saved = await window.pneumoApi(`/history/${analysisId}/review`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      $("review-current").textContent = describe(saved.review);
      $("review-status").textContent = "Saved.";
    } catch (err) {
      $("review-status").textContent = err.message;
    }
  });

  function cell(row, text, tag = "td") {
    const el = document.createElement(tag);
    el.textContent = text;
    row.append(el);
  }

  function table(header, rows, classes = []) {
    const t = document.createElement("table");
    const head = t.insertRow();
    header.forEach((h) => cell(head, h, "th"));
    rows.forEach((values, i) => {
      const row = t.insertRow();
      if (classes[i]) row.className = classes[i];
      values.forEach((v) => cell(row, v));
    });
    return t;
  }

  const num = (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(3));
  const rate = (r) => (!r || r.value === null ? "–"
    : `${num(r.value)}${r.ci95 ? ` [${num(r.ci95[0])}, ${num(r.ci95[1])}]` : ""}${r.k !== undefined ? ` (${r.k}/${r.n})` : ""}`);

  function section(model) {
    const box = document.createElement("div");
    const title = document.createElement("h3");
    title.textContent = model.model + (model.model_parent ? `, adapted from ${model.model_parent}` : "");
    const a = model.agreement;
    const acc = model.accuracy;
    const lines = document.createElement("p");
    lines.textContent = `${model.n} analyses; UNKNOWN ${rate(model.unknown)}; agreement ${num(a.agreement)} ` +
      `over ${a.n} reviewed, Cohen's kappa ${num(a.kappa)}.`;
    box.append(title, lines);
    if (acc.enough) {
      box.append(table(["sensitivity", "specificity", "AUC"], [[rate(acc.sensitivity), rate(acc.specificity), rate(acc.auc)]]));
    } else {
      const p = document.createElement("p");
      p.textContent = acc.message;
      box.append(p);
    }
    const weeks = model.weeks.slice(-8);
    box.append(table(["week", "n", "UNKNOWN", "OOD warning", "median P", "PSI", "drift"],
      weeks.map((w) => [w.week, String(w.n), rate(w.unknown), rate(w.warning), num(w.probability && w.probability.median),
        num(w.drift && w.drift.psi), (w.drift && w.drift.status) || ""]),
      weeks.map((w) => (w.drift && w.drift.status) || "")));
    return box;
  }

  $("site-load").addEventListener("click", async () => {
    const body = $("site-body");
    body.textContent = "Loading…";
    try {
      const report = await window.pneumoApi("/site/report");
      body.textContent = "";
      if (!report.models.length) body.textContent = "The history holds no analysis yet.";
      report.models.forEach((m) => body.append(section(m)));
    } catch (err) {
      body.textContent = err.message;
    }
  });

  function allow(session) {
    mayReview = Boolean(session && session.signed_in !== false && REVIEWERS.includes(session.role));
    $("site-card").hidden = !mayReview;
    $("review-form").hidden = !mayReview || analysisId === null;
  }

  document.addEventListener("pneumo:session", (event) => allow(event.detail));
  window.pneumoApi("/session").then(allow, () => allow(null));
})();
