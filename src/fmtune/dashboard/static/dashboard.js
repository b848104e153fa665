// The dashboard page: polls /api/view and renders it. Every value from a trial or the config is
// put into the page as text (textContent), never parsed as HTML.
"use strict";

const POLL_MS = 1000;
const COLUMNS = [
  ["trial_id", "trial"], ["status", "status"], ["score", "objective"], ["best_epoch", "best epoch"],
  ["epochs", "epochs"], ["worker", "worker"], ["seconds", "time"], ["hyperparameters", "hyperparameters"],
  ["stop_reason", "why it ended there"],
];
const page = { view: null, etag: null, sortKey: "trial_id", sortDir: 1, filter: "" };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function fmtNumber(v, digits = 4) { return v === null || v === undefined ? "" : Number(v).toFixed(digits); }
function fmtSeconds(s) {
  if (s === null || s === undefined) return "";
  s = Math.round(s);
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}
function fmtValue(v) { return typeof v === "number" && !Number.isInteger(v) ? Number(v).toPrecision(4) : String(v); }
function fmtValues(values) { return Object.entries(values || {}).map(([k, v]) => `${k}=${fmtValue(v)}`).join(" "); }
function ago(iso, now) { return iso ? fmtSeconds((now - Date.parse(iso)) / 1000) + " ago" : ""; }

function stat(parent, label, value) {
  const box = el("div", null, "stat");
  box.append(el("span", label, "label"), el("span", value, "value"));
  parent.append(box);
}

function renderHeader(s) {
  document.getElementById("experiment").textContent = s.experiment;
  document.title = `${s.experiment}: fmtune dashboard`;
  const phase = document.getElementById("phase");
  phase.textContent = s.phase;
  phase.className = `badge ${s.phase}`;
  const steps = document.getElementById("phases");
  steps.replaceChildren();
  for (const step of s.phases) {
    const item = el("li", step.phase, `step ${step.status}`);
    item.dataset.phase = step.phase;
    item.title = step.status;
    steps.append(item);
  }
  document.getElementById("subtitle").textContent =
    [s.algorithm && `${s.algorithm} search`, s.family && `over ${s.family}`, s.dataset && `on ${s.dataset}`]
      .filter(Boolean).join(" ");
  const stats = document.getElementById("stats");
  stats.replaceChildren();
  stat(stats, "trials finished", `${s.trials_finished} / ${s.max_trials}`);
  stat(stats, "running", s.trials_running);
  stat(stats, `best ${s.objective}`, s.best_score === null ? "n/a" : fmtNumber(s.best_score));
  stat(stats, "best trial", s.best_trial === null ? "n/a" : s.best_trial);
  stat(stats, "elapsed", fmtSeconds(s.elapsed_seconds) || "n/a");
  if (s.budget) stat(stats, "budget used", `${fmtSeconds(s.budget.used_seconds)} of ${fmtSeconds(s.budget.seconds)}`);
  const unwritten = s.state_write_error &&
    `The coordinator cannot write its state (${s.state_write_failures} failed writes, retrying): ${s.state_write_error}`;
  const message = document.getElementById("message");
  const text = [s.message, unwritten].filter(Boolean).join(" ");
  message.hidden = !text;
  message.textContent = text;
}

function renderFinal(s) {
  const box = document.getElementById("final-stats");
  box.replaceChildren();
  const dep = s.deployment;
  stat(box, "retraining", s.retrain ? `${s.retrain.epochs_run} epochs, ${fmtSeconds(s.retrain.seconds)}` :
    (s.phase === "retrain" ? `running: epoch ${s.retrain_epochs_so_far} done` : "not yet"));
  stat(box, "test accuracy", s.test_accuracy === null ? "n/a" : fmtNumber(s.test_accuracy));
  stat(box, "exported version", s.exported_version === null ? "n/a" : s.exported_version);
  stat(box, "deployment", dep ? `${dep.outcome}${dep.version !== null ? " v" + dep.version : ""}` +
    (dep.message ? `: ${dep.message}` : "") : (s.phase === "deploy" ? "in progress" : "n/a"));
  const accuracy = box.querySelectorAll(".stat .value")[1];
  accuracy.id = "test-accuracy";
}

function renderWorkers(workers, now) {
  const body = document.querySelector("#workers tbody");
  body.replaceChildren();
  for (const w of workers) {
    const row = el("tr");
    row.dataset.worker = w.worker;
    const lease = w.lease_expires_at ? `${Math.max(0, Math.round((Date.parse(w.lease_expires_at) - now) / 1000))}s left` : "";
    row.append(el("td", w.worker), el("td", w.status, `status ${w.status}`), el("td", w.trial_id ?? ""),
      el("td", ago(w.last_seen_at, now)), el("td", lease), el("td", w.trials_finished, "num"));
    body.append(row);
  }
}

function sortValue(t, key) {
  const v = key === "hyperparameters" ? fmtValues(t.hyperparameters) : t[key];
  if (key === "trial_id" && /^\d+$/.test(v)) return Number(v);
  return v === null || v === undefined ? (page.sortDir > 0 ? Infinity : -Infinity) : v;
}

function renderTrials(view) {
  const head = document.querySelector("#trials thead tr");
  if (!head.children.length) {
    for (const [key, label] of COLUMNS) {
      const th = el("th", key === "score" ? view.summary.objective : label);
      th.dataset.key = key;
      th.addEventListener("click", () => {
        page.sortDir = page.sortKey === key ? -page.sortDir : (key === "score" && view.summary.direction === "max" ? -1 : 1);
        page.sortKey = key;
        renderTrials(page.view);
      });
      head.append(th);
    }
  }
  for (const th of head.children) {
    th.className = th.dataset.key === page.sortKey ? (page.sortDir > 0 ? "sorted-asc" : "sorted-desc") : "";
  }
  const select = document.getElementById("status-filter");
  const statuses = [...new Set(view.trials.map((t) => t.status))].sort();
  const shown = [...select.options].map((o) => o.value).slice(1);
  if (statuses.join() !== shown.join()) {
    select.replaceChildren(el("option", "all"));
    select.options[0].value = "";
    for (const s of statuses) { const o = el("option", s); o.value = s; select.append(o); }
    select.value = statuses.includes(page.filter) ? page.filter : "";
  }
  const rows = view.trials.filter((t) => !page.filter || t.status === page.filter);
  rows.sort((a, b) => {
    const x = sortValue(a, page.sortKey), y = sortValue(b, page.sortKey);
    return (x < y ? -1 : x > y ? 1 : 0) * page.sortDir;
  });
  const body = document.querySelector("#trials tbody");
  body.replaceChildren();
  const epochs = view.summary.epochs_per_trial;
  for (const t of rows) {
    const row = el("tr", null, t.trial_id === view.summary.best_trial ? "best" : "");
    row.dataset.trial = t.trial_id;
    const status = el("td", null, "status-cell");
    status.append(el("span", t.status, `status ${t.status}`));
    if (t.requeued_from.length) status.append(el("div", `re-queued from ${t.requeued_from.join(", ")}`, "requeued"));
    const planned = t.planned_epochs ?? epochs;
    row.append(el("td", t.trial_id), status, el("td", fmtNumber(t.score), "num"), el("td", t.best_epoch ?? "", "num"),
      el("td", planned ? `${t.epochs}/${planned}` : t.epochs, "num"), el("td", t.worker ?? ""),
      el("td", fmtSeconds(t.seconds), "num"), el("td", fmtValues(t.hyperparameters), "hp"),
      el("td", t.stop_reason, "reason"));
    body.append(row);
  }
  document.getElementById("trial-count").textContent = `${rows.length} of ${view.trials.length}`;
}

function renderCharts(figures, shares) {
  const config = { displaylogo: false, responsive: true };
  for (const [name, id] of [["best", "best-chart"], ["curves", "curves-chart"], ["parallel", "parallel-chart"],
    ["importance", "importance-chart"], ["retrain", "retrain-chart"]]) {
    Plotly.react(id, figures[name].data, figures[name].layout, config);
  }
  document.getElementById("importance-note").textContent =
    "";
}

function render(view) {
  page.view = view;
  const now = Date.parse(view.summary.updated_at) || Date.now();
  renderHeader(view.summary);
  renderWorkers(view.workers, now);
  renderTrials(view);
  renderFinal(view.summary);
  renderCharts(view.figures, view.importance);
  document.body.dataset.updated = view.summary.updated_at;
}

async function poll() {
  const connection = document.getElementById("connection");
  try {
    const headers = page.etag ? { "If-None-Match": page.etag } : {};
    const answer = await fetch("/api/view", { headers, cache: "no-store" });
    if (answer.status === 200) {
      page.etag = answer.headers.get("ETag");
      const view = await answer.json();
      if (view.missing) connection.textContent = `no run state yet in ${view.missing}`;
      else { render(view); connection.textContent = `updated ${new Date().toLocaleTimeString()}`; }
    } else if (answer.status !== 304) {
      connection.textContent = `the server answered ${answer.status}`;
    }
  } catch (error) {
    connection.textContent = "the dashboard server is not answering: the run has ended, or its coordinator " +
      "is gone (`fmtune dashboard WORKDIR` shows any run on disk)";
  }
  setTimeout(poll, POLL_MS);
}

document.getElementById("status-filter").addEventListener("change", (event) => {
  page.filter = event.target.value;
  if (page.view) renderTrials(page.view);
});
poll();
