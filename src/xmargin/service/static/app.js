/* xmargin dashboard: vanilla JS, inline SVG charts, no network beyond this server.
 *
 * Every figure shown comes from the /api/v1 endpoints; each number cell carries the exact
 * value it shows in a data-value attribute.  Live updates come from /api/v1/stream (server-sent
 * events read with fetch, so the API key travels in a header, never in the URL).
 */
"use strict";

const API = "/api/v1";
const SVGNS = "http://www.w3.org/2000/svg";
const state = { key: null, me: null, member: null, stream: null, refreshTimer: null, view: "whatif" };

/* ------------------------------------------------------------------ helpers */

const $ = (id) => document.getElementById(id);

function fmtMoney(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "n/a";
  const r = Math.round(x);
  return (r < 0 ? "-" : "") + Math.abs(r).toLocaleString("en-US");
}
function fmtPct(x) { return (x === null || x === undefined || !Number.isFinite(x)) ? "n/a" : x.toFixed(1) + "%"; }
function fmtFactor(x) { return (x === null || x === undefined || !Number.isFinite(x)) ? "n/a" : x.toFixed(4); }
function fmtShort(x) {
  const a = Math.abs(x);
  if (a >= 1e9) return (x / 1e9).toFixed(2) + "bn";
  if (a >= 1e6) return (x / 1e6).toFixed(1) + "m";
  if (a >= 1e3) return (x / 1e3).toFixed(0) + "k";
  return x.toFixed(0);
}

function setValue(el, value, fmt = fmtMoney) {
  el.textContent = fmt(value);
  el.dataset.value = value === null || value === undefined ? "" : String(value);
}

function cell(tr, value, fmt) {
  const td = document.createElement("td");
  if (fmt) setValue(td, value, fmt); else { td.textContent = value; td.className = "text"; }
  tr.appendChild(td);
  return td;
}

function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

async function api(path, options = {}) {
  const headers = Object.assign({ "X-API-Key": state.key }, options.headers || {});
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(API + path, Object.assign({}, options, { headers }));
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const err = new Error(describeError(resp.status, body));
    err.status = resp.status;
    throw err;
  }
  return body;
}

function describeError(status, body) {
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("\n");
  }
  if (body && body.detail) return `${status}: ${body.detail}`;
  return `HTTP ${status}`;
}

/* ------------------------------------------------------------------ charts (inline SVG) */

function svgEl(tag, attrs, parent) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

/* Grouped bars: categories along x, one bar per series in each group. */
function barChart(svg, categories, series) {
  clear(svg);
  const W = 820, H = 260, left = 70, right = 10, top = 24, bottom = 34;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const values = series.flatMap((s) => s.values).filter((v) => Number.isFinite(v));
  const max = Math.max(1, ...values);
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svgEl("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid" }, svg);
    svgEl("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, svg).textContent = fmtShort(v);
  }
  svgEl("line", { x1: left, x2: W - right, y1: y(0), y2: y(0), class: "axis" }, svg);
  const groupW = (W - left - right) / Math.max(1, categories.length);
  const barW = Math.min(60, (groupW * 0.8) / series.length);
  categories.forEach((cat, i) => {
    const x0 = left + i * groupW + (groupW - barW * series.length) / 2;
    series.forEach((s, j) => {
      const v = s.values[i];
      if (!Number.isFinite(v)) return;
      const rect = svgEl("rect", { x: x0 + j * barW, y: y(Math.max(v, 0)), width: barW - 2,
        height: Math.max(0, y(0) - y(Math.max(v, 0))), class: s.cls, "data-value": v }, svg);
      svgEl("title", {}, rect).textContent = `${cat} ${s.name}: ${fmtMoney(v)}`;
    });
    svgEl("text", { x: left + i * groupW + groupW / 2, y: H - bottom + 16, "text-anchor": "middle" }, svg).textContent = cat;
  });
  series.forEach((s, j) => {  // legend
    svgEl("rect", { x: left + j * 150, y: 4, width: 12, height: 12, class: s.cls }, svg);
    svgEl("text", { x: left + j * 150 + 16, y: 14 }, svg).textContent = s.name;
  });
}

/* ------------------------------------------------------------------ login */

async function login(key) {
  state.key = key;
  const me = await api("/me");
  state.me = me;
  sessionStorage.setItem("xmargin-key", key);
  $("who").textContent = me.scope === "admin" ? "admin (market view)" : `member ${me.member}`;
  $("as-of").textContent = `As of ${me.as_of}.`;
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  $("tab-market").hidden = me.scope !== "admin";
  const sel = $("member-select");
  clear(sel);
  for (const m of me.members) {
    const opt = document.createElement("option");
    opt.value = m; opt.textContent = m; sel.appendChild(opt);
  }
  sel.disabled = me.members.length < 2;
  state.member = me.members[0] || null;
  openStream();
  show(me.scope === "admin" ? "market" : "member");
}

function logout() {
  sessionStorage.removeItem("xmargin-key");
  if (state.stream) state.stream.abort();
  location.reload();
}

function show(view) {
  state.view = view;
  for (const v of ["whatif", "member", "market", "calls"]) {
    $(`view-${v}`).hidden = v !== view;
    $(`tab-${v}`).setAttribute("aria-selected", String(v === view));
  }
  if (view === "member") loadMember().catch(showViewError);
  if (view === "market") loadMarket().catch(showViewError);
}

function showViewError(e) { $("whatif-error").textContent = e.message; }

/* ------------------------------------------------------------------ what-if calculator */

// The API's models are strict (a quantity is a JSON number, an election a JSON boolean): CSV cells
// of those columns are converted here; anything that does not convert is sent as text so that the
// server names the field.
const NUMBER_COLUMNS = new Set(["quantity", "repo_rate", "cash_amount"]);
const TRUE_WORDS = new Set(["true", "yes", "y", "1", "xm"]);  // as portfolio/fields.py
const FALSE_WORDS = new Set(["false", "no", "n", "0"]);  // as portfolio/fields.py

function typedCell(column, text) {
  if (NUMBER_COLUMNS.has(column) && /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) return Number(text);
  if (column === "cross_margin") {
    const word = text.toLowerCase();
    if (TRUE_WORDS.has(word)) return true;
    if (FALSE_WORDS.has(word)) return false;
  }
  return text;
}

function parseCsv(text) {
  const rows = [];
  let field = "", row = [], quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field); field = "";
      if (row.some((f) => f.trim() !== "")) rows.push(row);
      row = [];
    } else field += c;
  }
  row.push(field);
  if (row.some((f) => f.trim() !== "")) rows.push(row);
  if (!rows.length) return [];
  const header = rows[0].map((h) => h.trim().replace(/^\ufeff/, ""));
  return rows.slice(1).map((cells) => {
    const obj = {};
    header.forEach((h, k) => { const v = (cells[k] || "").trim(); if (v !== "") obj[h] = typedCell(h, v); });
    return obj;
  });
}

function portfolioFromText(text) {
  const t = text.trim();
  if (!t) throw new Error("paste or upload a portfolio first");
  if (t.startsWith("[") || t.startsWith("{")) {
    try { return JSON.parse(t); } catch (e) { throw new Error(`not valid JSON: ${e.message}`); }
  }
  return parseCsv(t);
}

async function runWhatIf() {
  $("whatif-error").textContent = "";
  let portfolio;
  try { portfolio = portfolioFromText($("portfolio-text").value); } catch (e) { $("whatif-error").textContent = e.message; return; }
  $("whatif-run").disabled = true;
  try {
    const doc = await api("/what-if/portfolio", { method: "POST", body: JSON.stringify(portfolio) });
    renderWhatIf(doc);
  } catch (e) {
    $("whatif-error").textContent = e.message;
    $("whatif-result").hidden = true;
  } finally {
    $("whatif-run").disabled = false;
  }
}

function renderWhatIf(doc) {
  const t = doc.totals;
  setValue($("wi-before"), t.total_before);
  setValue($("wi-after"), t.total_after);
  setValue($("wi-savings"), t.savings);
  setValue($("wi-savings-pct"), t.savings_pct, fmtPct);
  const tb = $("whatif-totals").querySelector("tbody");
  clear(tb);
  const lines = [
    ["FICC", "ficc", t.ficc_standalone, t.ficc_requirement],
    ["CME", "cme", t.cme_standalone, t.cme_requirement],
    ["Total", "total", t.total_before, t.total_after],
  ];
  for (const [label, key, sa, comb] of lines) {
    const tr = document.createElement("tr");
    tr.dataset.house = key;
    cell(tr, label);
    cell(tr, sa, fmtMoney).dataset.field = "standalone";
    cell(tr, comb, fmtMoney).dataset.field = "combined";
    cell(tr, sa - comb, fmtMoney).dataset.field = "savings";
    tb.appendChild(tr);
  }
  barChart($("whatif-chart"), ["FICC", "CME", "Total"], [
    { name: "stand-alone", cls: "bar-before", values: [t.ficc_standalone, t.cme_standalone, t.total_before] },
    { name: "cross-margined", cls: "bar-after", values: [t.ficc_requirement, t.cme_requirement, t.total_after] },
  ]);
  const ab = $("whatif-accounts").querySelector("tbody");
  clear(ab);
  for (const a of doc.accounts) {
    const tr = document.createElement("tr");
    tr.dataset.account = a.account;
    cell(tr, a.account); cell(tr, a.member); cell(tr, a.cross_margin ? "yes" : "no");
    for (const k of ["ficc_standalone", "cme_standalone", "ficc_combined", "cme_combined"]) cell(tr, a[k], fmtMoney).dataset.field = k;
    cell(tr, a.applied_reduction_factor, fmtFactor).dataset.field = "applied_reduction_factor";
    for (const k of ["total_before", "total_after", "savings"]) cell(tr, a[k], fmtMoney).dataset.field = k;
    cell(tr, a.status + (a.reason ? `: ${a.reason}` : ""));
    ab.appendChild(tr);
  }
  const ul = $("whatif-warnings");
  clear(ul);
  for (const w of doc.warnings) { const li = document.createElement("li"); li.textContent = w; ul.appendChild(li); }
  $("whatif-result").hidden = false;
}

async function exampleFromBook() {
  $("whatif-error").textContent = "";
  try {
    const list = await api("/accounts");
    const mine = list.accounts.filter((a) => a.positions > 0).slice(0, 3);
    const rows = [];
    for (const a of mine) {
      const acc = await api(`/accounts/${encodeURIComponent(a.account)}`);
      for (const p of acc.positions) {
        if (p.instrument.startsWith("REPO")) continue;  // repos need their terms: not in the summary
        rows.push({ account: acc.account, member: acc.member, account_type: acc.account_type,
                    cross_margin: acc.cross_margin, instrument: p.instrument, quantity: p.quantity });
      }
    }
    $("portfolio-text").value = JSON.stringify(rows, null, 1);
  } catch (e) { $("whatif-error").textContent = e.message; }
}

/* ------------------------------------------------------------------ member view */

async function loadMember() {
  if (!state.member) return;
  const s = await api(`/members/${encodeURIComponent(state.member)}`);
  renderMember(s);
}

function renderMember(s) {
  $("member-name").textContent = s.member;
  setValue($("member-before"), s.total.before);
  setValue($("member-after"), s.total.after);
  setValue($("member-savings"), s.total.savings);
  setValue($("member-savings-pct"), s.total.savings_pct, fmtPct);
  setValue($("member-funding"), s.total.funding_saved);
  barChart($("member-chart"), ["house", "customers", "total"], [
    { name: "before", cls: "bar-before", values: [s.house.before, s.customers.before, s.total.before] },
    { name: "after", cls: "bar-after", values: [s.house.after, s.customers.after, s.total.after] },
  ]);
  const tb = $("member-accounts").querySelector("tbody");
  clear(tb);
  for (const a of s.accounts) tb.appendChild(accountRow(a));
  applyAccountFilter();
  const sel = $("tw-account");
  const keep = sel.value;
  clear(sel);
  for (const a of s.accounts) { const o = document.createElement("option"); o.value = a.account; o.textContent = a.account; sel.appendChild(o); }
  if (keep) sel.value = keep;
}

function accountRow(a) {
  const tr = document.createElement("tr");
  tr.dataset.account = a.account;
  cell(tr, a.account); cell(tr, a.account_type); cell(tr, a.archetype || "");
  cell(tr, a.cross_margin ? "yes" : "no");
  const pos = cell(tr, a.positions === undefined ? "" : String(a.positions));
  pos.dataset.field = "positions";
  pos.className = "";
  for (const k of ["ficc_requirement", "cme_requirement", "total_before", "total_after", "savings"]) cell(tr, a[k], fmtMoney).dataset.field = k;
  const td = document.createElement("td");
  td.className = "text";
  const b = document.createElement("button");
  b.type = "button"; b.className = "statement"; b.textContent = "statement"; b.dataset.account = a.account;
  b.setAttribute("aria-label", `statement of ${a.account}`);
  td.appendChild(b);
  tr.appendChild(td);
  return tr;
}

/* ------------------------------------------------------------------ accounts: search, pages, statements */

/* Show the rows matching the search box, one page at a time (rows stay in the DOM, hidden). */
function applyAccountFilter() {
  const tb = $("member-accounts").querySelector("tbody");
  const q = $("account-search").value.trim().toLowerCase();
  const rows = Array.from(tb.children);
  const matched = rows.filter((tr) => !q || [0, 1, 2].some((k) => (tr.children[k]?.textContent || "").toLowerCase().includes(q)));
  const size = Number($("page-size").value) || 25;
  const pages = Math.max(1, Math.ceil(matched.length / size));
  state.page = Math.min(Math.max(state.page || 0, 0), pages - 1);
  const shown = new Set(matched.slice(state.page * size, (state.page + 1) * size));
  for (const tr of rows) tr.hidden = !shown.has(tr);
  $("account-count").textContent = `${matched.length} of ${rows.length} accounts`;
  $("page-info").textContent = `page ${state.page + 1} of ${pages}`;
  $("page-prev").disabled = state.page === 0;
  $("page-next").disabled = state.page >= pages - 1;
}

/* The account's statement (offline HTML from the API, fetched with the key) in a new tab. */
async function openStatement(account) {
  const resp = await fetch(`${API}/accounts/${encodeURIComponent(account)}/statement?format=html`,
    { headers: { "X-API-Key": state.key } });
  if (!resp.ok) { alert(`statement of ${account}: HTTP ${resp.status}`); return; }
  const url = URL.createObjectURL(new Blob([await resp.text()], { type: "text/html" }));
  const a = document.createElement("a");
  a.href = url; a.target = "_blank"; a.rel = "noopener";
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function wireAccountTools() {
  $("account-search").addEventListener("input", () => { state.page = 0; applyAccountFilter(); });
  $("page-prev").addEventListener("click", () => { state.page -= 1; applyAccountFilter(); });
  $("page-next").addEventListener("click", () => { state.page += 1; applyAccountFilter(); });
  $("page-size").addEventListener("change", () => { state.page = 0; applyAccountFilter(); });
  $("member-accounts").querySelector("tbody").addEventListener("click", (e) => {
    const b = e.target.closest("button.statement");
    if (b) openStatement(b.dataset.account);
  });
}
document.addEventListener("DOMContentLoaded", wireAccountTools);

function applyUpdate(ev) {
  // the account's row, at once (the event carries its figures after the trade)
  const tb = $("member-accounts").querySelector("tbody");
  let tr = tb.querySelector(`tr[data-account="${CSS.escape(ev.account)}"]`);
  if (ev.member === state.member) {
    const fresh = accountRow(Object.assign({ account: ev.account, account_type: ev.account_type,
      archetype: tr ? tr.children[2].textContent : "", cross_margin: tr ? tr.children[3].textContent === "yes" : true,
      positions: undefined }, ev.figures));
    if (tr) {
      fresh.children[4].textContent = tr.children[4].textContent;
      tb.replaceChild(fresh, tr);
    } else tb.appendChild(fresh);
    fresh.classList.add("flash");
    applyAccountFilter();
  }
  const li = document.createElement("li");
  li.dataset.trade = ev.trade_id;
  li.textContent = `${ev.time} ${ev.trade_id}: ${ev.account} ${ev.quantity > 0 ? "+" : ""}${ev.quantity} ${ev.instrument}` +
    ` -> requirement ${fmtMoney(ev.figures.total_after)} (stand-alone ${fmtMoney(ev.figures.total_before)})`;
  const log = $("live-log");
  log.insertBefore(li, log.firstChild);
  while (log.children.length > 50) log.removeChild(log.lastChild);
  // then the totals, once the burst settles
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => {
    if (state.view === "member") loadMember().catch(showViewError);
    if (state.view === "market") loadMarket().catch(showViewError);
  }, 250);
}

async function tradeWhatIf(e) {
  e.preventDefault();
  $("tw-error").textContent = "";
  const body = { account: $("tw-account").value, instrument: $("tw-instrument").value.trim(),
                 quantity: Number($("tw-quantity").value) };
  try {
    const r = await api("/what-if/trade", { method: "POST", body: JSON.stringify(body) });
    const tb = $("tw-result").querySelector("tbody");
    clear(tb);
    for (const [label, f, fmt] of [["before", r.before, fmtMoney], ["after", r.after, fmtMoney], ["change", r.change, fmtMoney]]) {
      const tr = document.createElement("tr");
      tr.dataset.row = label;
      cell(tr, label);
      for (const k of ["ficc_requirement", "cme_requirement", "total_before", "total_after", "savings"]) cell(tr, f[k], fmt).dataset.field = k;
      tb.appendChild(tr);
    }
    $("tw-result").hidden = false;
  } catch (err) { $("tw-error").textContent = err.message; }
}

/* ------------------------------------------------------------------ market view */

async function loadMarket() {
  const s = await api("/market");
  const m = s.market;
  setValue($("market-before"), m.before);
  setValue($("market-after"), m.after);
  setValue($("market-savings"), m.savings);
  setValue($("market-savings-pct"), m.savings_pct, fmtPct);
  setValue($("market-stress-before"), m.stressed_loss_before);
  setValue($("market-stress-after"), m.stressed_loss_after);
  const cov = $("market-coverage");
  cov.textContent = `${Number.isFinite(m.coverage_before) ? m.coverage_before.toFixed(2) : "n/a"}x / ` +
    `${Number.isFinite(m.coverage_after) ? m.coverage_after.toFixed(2) : "n/a"}x`;
  barChart($("market-chart"), s.members.map((x) => x.member), [
    { name: "before", cls: "bar-before", values: s.members.map((x) => x.total.before) },
    { name: "after", cls: "bar-after", values: s.members.map((x) => x.total.after) },
  ]);
  barChart($("market-stress-chart"), ["margin", "worst historical loss"], [
    { name: "before", cls: "bar-before", values: [m.before, m.stressed_loss_before] },
    { name: "after", cls: "bar-after", values: [m.after, m.stressed_loss_after] },
  ]);
  const tb = $("market-members").querySelector("tbody");
  clear(tb);
  for (const x of s.members) {
    const tr = document.createElement("tr");
    tr.dataset.member = x.member;
    cell(tr, x.member); cell(tr, String(x.total.accounts)).className = "";
    cell(tr, x.house.before, fmtMoney); cell(tr, x.house.after, fmtMoney);
    cell(tr, x.customers.before, fmtMoney); cell(tr, x.customers.after, fmtMoney);
    cell(tr, x.total.before, fmtMoney).dataset.field = "before";
    cell(tr, x.total.after, fmtMoney).dataset.field = "after";
    cell(tr, x.total.savings, fmtMoney).dataset.field = "savings";
    cell(tr, x.total.savings_pct, fmtPct);
    tb.appendChild(tr);
  }
}

/* ------------------------------------------------------------------ calls reconciliation (issue 16) */

async function runCalls() {
  $("calls-error").textContent = "";
  try {
    const rows = parseCsv($("calls-text").value);
    const calls = rows.map((r) => ({ account: r.account, clearinghouse: r.clearinghouse, called: Number(r.called) }));
    const body = { calls, tolerance_pct: Number($("calls-tolerance").value || 0) };
    const rep = await api("/reconcile-calls", { method: "POST", body: JSON.stringify(body) });
    const tbody = $("calls-table").querySelector("tbody");
    clear(tbody);
    for (const r of rep.rows) {
      const tr = document.createElement("tr");
      if (r.flagged) tr.className = "flagged";
      cell(tr, r.account); cell(tr, r.clearinghouse); cell(tr, r.called, fmtMoney); cell(tr, r.ours, fmtMoney);
      cell(tr, r.difference, fmtMoney); cell(tr, r.difference_pct, fmtPct); cell(tr, r.flagged ? "FLAG" : "");
      cell(tr, r.note);
      tbody.appendChild(tr);
    }
    $("calls-summary").textContent = `${rep.summary.flagged} of ${rep.summary.pairs} flagged (as of ${rep.as_of})`;
    $("calls-table").hidden = false;
  } catch (e) { $("calls-error").textContent = e.message; }
}

/* ------------------------------------------------------------------ live updates (SSE over fetch) */

function openStream() {
  if (state.stream) state.stream.abort();
  const ctrl = new AbortController();
  state.stream = ctrl;
  const status = $("live-status");
  (async () => {
    while (!ctrl.signal.aborted) {
      try {
        const resp = await fetch(API + "/stream", { headers: { "X-API-Key": state.key, Accept: "text/event-stream" },
                                                   signal: ctrl.signal, cache: "no-store" });
        if (!resp.ok) throw new Error(`stream: HTTP ${resp.status}`);
        const reader = resp.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            handleEvent(block, status);
          }
        }
      } catch (e) {
        if (ctrl.signal.aborted) return;
      }
      status.dataset.state = "retry";
      status.textContent = "reconnecting";
      await new Promise((r) => setTimeout(r, 2000));
    }
  })();
}

function handleEvent(block, status) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const k = line.indexOf(":");
    const field = k < 0 ? line : line.slice(0, k);
    const value = k < 0 ? "" : line.slice(k + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (event === "hello") {
    status.dataset.state = "live";
    status.textContent = "live";
  } else if (event === "margin" && data.length) {
    applyUpdate(JSON.parse(data.join("\n")));
  }
}

/* ------------------------------------------------------------------ wiring */

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("login-error").textContent = "";
    try { await login($("key").value.trim()); } catch (err) {
      $("login-error").textContent = err.status === 401 ? "That key is not valid." : err.message;
    }
  });
  $("logout").addEventListener("click", logout);
  for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => show(b.dataset.view));
  $("whatif-run").addEventListener("click", runWhatIf);
  $("whatif-example").addEventListener("click", exampleFromBook);
  $("portfolio-file").addEventListener("change", async (e) => {
    const f = e.target.files[0];
    if (f) $("portfolio-text").value = await f.text();
  });
  $("member-select").addEventListener("change", (e) => { state.member = e.target.value; loadMember().catch(showViewError); });
  $("trade-form").addEventListener("submit", tradeWhatIf);
  $("calls-run").addEventListener("click", runCalls);
  const saved = sessionStorage.getItem("xmargin-key");
  if (saved) login(saved).catch(() => sessionStorage.removeItem("xmargin-key"));
});
