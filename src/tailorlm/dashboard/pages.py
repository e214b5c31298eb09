"""The dashboard's HTML: server-rendered pages with a little inline JavaScript, no external asset.

Why inline: the dashboard must work without network (no CDN) and without a Node build step; each page is one
response. Every value that comes from a run directory or a recipe is escaped (``html.escape``) before it is
placed in the page, and JSON handed to a script is escaped for ``<script>`` (``script_json``).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import quote

from tailorlm.dashboard.index import COLUMNS, Entry, progress_text, table_cells
from tailorlm.metric_names import flat_metric_keys, headline_keys, metric_name

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7fb}
header{background:#1f3a8a;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600} main{padding:16px 24px}
table{border-collapse:collapse;background:#fff;width:100%;margin:8px 0 16px}
th,td{border-bottom:1px solid #e3e6ee;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef1f8;cursor:pointer;user-select:none} td.num{text-align:right;font-variant-numeric:tabular-nums}
.status-finished{color:#0a7a32}.status-failed{color:#b3261e}.status-running{color:#1f5fd6}
.status-interrupted{color:#a05a00} .box{background:#fff;border:1px solid #dde2ec;padding:10px 14px;margin:8px 0}
.error{background:#fdecea;border:1px solid #f4b4ae;color:#8a1c13;padding:10px 14px;white-space:pre-wrap}
.ok{background:#e8f5ec;border:1px solid #a8d8b5;color:#0a5a26;padding:10px 14px;white-space:pre-wrap}
.warn{background:#fff6e0;border:1px solid #f0d18a;padding:8px 12px} textarea{width:100%;font:13px monospace}
pre{white-space:pre-wrap;background:#fff;border:1px solid #dde2ec;padding:8px;max-height:260px;overflow:auto}
button{padding:5px 12px;margin:4px 4px 4px 0;cursor:pointer} .muted{color:#687087}
tr.current{outline:2px solid #1f5fd6} input.note{width:95%}
"""

#: POSTs carry this header: a page of another site cannot send it without a CORS preflight, which is never allowed
CSRF_HEADER = "X-Tailor-Dashboard"

FETCH_JS = f"""
async function api(url, body) {{
  const init = body === undefined ? {{}} : {{method: 'POST', body: JSON.stringify(body),
    headers: {{'Content-Type': 'application/json', '{CSRF_HEADER}': '1'}}}};
  const reply = await fetch(url, init);
  const data = await reply.json();
  if (!reply.ok) throw new Error(data.error || reply.statusText);
  return data;
}}
"""


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no ``</script>`` or ``<!--`` can close or confuse it)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def layout(title: str, body: str, script: str = "") -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)} · tailor dashboard"
            f"</title><style>{CSS}</style></head><body><header><a href='/'>tailor dashboard</a><a href='/'>runs</a>"
            f"<a href='/launch' id=nav-launch>launch a run</a></header><main>{body}</main>"
            f"<script>{FETCH_JS}{script}</script></body></html>")


def run_link(rel: str) -> str:
    return f"/run?path={quote(rel)}"


# ------------------------------------------------------------------------------------------------ the list

INDEX_JS = """
const rows = [...document.querySelectorAll('#runs tbody tr')];
function applyFilter() {
  const text = document.getElementById('filter').value.toLowerCase();
  const status = document.getElementById('status-filter').value;
  let shown = 0;
  for (const row of rows) {
    const ok = row.textContent.toLowerCase().includes(text) && (!status || row.dataset.status === status);
    row.style.display = ok ? '' : 'none'; shown += ok ? 1 : 0;
  }
  document.getElementById('shown').textContent = shown + ' of ' + rows.length + ' shown';
}
document.getElementById('filter').addEventListener('input', applyFilter);
document.getElementById('status-filter').addEventListener('change', applyFilter);
document.querySelectorAll('#runs th').forEach((th, column) => th.addEventListener('click', () => {
  const body = document.querySelector('#runs tbody');
  const down = th.dataset.down !== '1'; th.dataset.down = down ? '1' : '0';
  const key = r => r.children[column].dataset.sort ?? r.children[column].textContent;
  const sorted = [...body.children].sort((a, b) => {
    const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
    const c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
    return down ? -c : c;
  });
  sorted.forEach(r => body.appendChild(r));
}));
applyFilter();
document.getElementById('compare').addEventListener('click', () => {
  const picked = [...document.querySelectorAll('input.pick:checked')].map(box => box.value);
  if (picked.length < 2 || picked.length > 5) { alert('select 2 to 5 runs with a test metric'); return; }
  location.href = '/compare?' + picked.map(p => 'path=' + encodeURIComponent(p)).join('&');
});
"""


def index_page(folder: str, entries: list[Entry]) -> str:
    """The run list: every row of ``tailor runs``, filterable by text and status, sortable by any column."""
    head = "<th></th>" + "".join(f"<th>{escape(c)}</th>" for c in COLUMNS)
    body = []
    for entry in entries:
        cells = table_cells(entry)
        sort_values = [None] * len(cells)
        sort_values[5], sort_values[6] = entry.value, entry.gain
        sort_values[8] = entry.wall_s
        comparable = entry.kind in COMPARABLE_KINDS and entry.value is not None
        pick = f"<input type=checkbox class=pick value='{escape(entry.path)}'>" if comparable else ""
        tds = [f"<td>{pick}</td><td><a href='{escape(run_link(entry.path))}'>{escape(cells[0])}</a></td>"]
        for i, cell in enumerate(cells[1:], start=1):  # td 0 is the checkbox: the sort script skips no column
            css = f" class='status-{escape(entry.status)}'" if i == 2 else " class=num" if i in (5, 6, 8) else ""
            key = "" if sort_values[i] is None else f" data-sort='{sort_values[i]}'"
            tds.append(f"<td{css}{key}>{escape(cell)}</td>")
        body.append(f"<tr data-status='{escape(entry.status)}' data-kind='{escape(entry.kind)}'>{''.join(tds)}</tr>")
    options = "".join(f"<option value={s}>{s}</option>" for s in ("finished", "running", "interrupted", "failed"))
    html = (f"<h1>Runs under {escape(folder)}</h1><p><input id=filter placeholder='filter: text, task, model…' "
            f"size=40> <select id=status-filter><option value=''>any status</option>{options}</select> "
            f"<span id=shown class=muted></span> <button id=compare>Compare selected (2–5)</button></p>"
            f"<table id=runs><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            + ("" if entries else "<p class=muted>No run directories, tune studies or comparisons yet: start one "
               "from <a href='/launch'>launch a run</a>.</p>"))
    return layout("runs", html, INDEX_JS)


# ------------------------------------------------------------------------------------------------ compare

#: kinds of rows with a test metric ``tailor compare`` can read
COMPARABLE_KINDS = ("run", "seeds", "kfold")


def compare_page(paths: list[str], names: list[str], table: list[tuple[str, list[str]]], verdicts: list[str]) -> str:
    """``tailor compare`` in the page: the side-by-side rows and the paired significance verdicts."""
    head = "".join(f"<th><a href='{escape(run_link(path))}'>{escape(name)}</a></th>"
                   for path, name in zip(paths, names, strict=True))
    body = "".join(f"<tr><td>{escape(title)}</td>" + "".join(f"<td class=num>{escape(c)}</td>" for c in cells) + "</tr>"
                   for title, cells in table)
    lines = "".join(f"<li>{escape(line)}</li>" for line in verdicts)
    html = (f"<h1>Comparison of {len(paths)} runs</h1><table id=comparison><thead><tr><th></th>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table><h2>Is the difference real?</h2><ul id=verdicts>{lines}</ul>"
            "<p class=muted>Paired tests on the same test examples against the first run: bootstrap (2,000 "
            "resamples) of the main metric, McNemar on accuracy for two single runs (as <code>tailor compare</code>)."
            "</p>")
    return layout("compare", html)


# ------------------------------------------------------------------------------------------------ one run

RUN_JS = """
const PATH = %s;
function sparkline(values) {
  if (values.length < 2) return '';
  const lo = Math.min(...values), hi = Math.max(...values), w = 360, h = 70;
  const pts = values.map((v, i) => (i * w / (values.length - 1)).toFixed(1) + ',' +
    (h - 4 - (hi > lo ? (v - lo) / (hi - lo) : 0.5) * (h - 8)).toFixed(1)).join(' ');
  return `<svg width=${w} height=${h} role=img aria-label="training loss"><polyline fill=none stroke="#1f5fd6"
    stroke-width=2 points="${pts}"/></svg><br><span class=muted>training loss, last ${values.length} logged
    steps (${hi.toFixed(4)} to ${lo.toFixed(4)})</span>`;
}
async function poll() {
  try {
    const p = await api('/api/progress?path=' + encodeURIComponent(PATH));
    const el = document.getElementById('status');
    el.textContent = p.status + (p.detail ? ': ' + p.detail : '');
    el.className = 'status-' + p.status;
    document.getElementById('progress').textContent = p.progress_text;
    document.getElementById('curve').innerHTML = sparkline(p.losses || []);
    if (p.status === 'running') setTimeout(poll, 1000);
    else if (%s && p.status === 'finished') location.reload();
  } catch (e) { setTimeout(poll, 3000); }
}
poll();
"""


def metrics_table(metrics: dict[str, Any]) -> str:
    """Baselines and the fine-tuned model on the test split, the columns ``tailor run`` prints."""
    systems = {name: value for name, value in (metrics.get("baseline") or {}).items() if isinstance(value, dict)}
    systems["fine-tuned"] = metrics.get("tuned") or {}
    keys = headline_keys(flat_metric_keys(list(systems.values())))[:8]
    if not keys:
        return "<p class=muted>No test metrics recorded.</p>"
    head = "".join(f"<th>{escape(metric_name(k))}</th>" for k in keys)
    rows = []
    for name, values in systems.items():
        floor = " (floor)" if values.get("floor") is True else ""
        cells = "".join(f"<td class=num>{values[k]:.4f}</td>" if isinstance(values.get(k), int | float)
                        and not isinstance(values.get(k), bool) else "<td class=num>–</td>" for k in keys)
        rows.append(f"<tr><td>{escape(name.replace('_', ' ') + floor)}</td>{cells}</tr>")
    return f"<table id=metrics><thead><tr><th>test split</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def trials_table(rows: list[dict[str, str]]) -> str:
    """A tune study's trials.csv (tune/outputs.py): number, state, value, duration, the searched keys, note."""
    if not rows:
        return ""
    columns = [c for c in rows[0] if c not in ("dir", "weights")]
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(row.get(c) or '')}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<h2>Trials</h2><table id=trials><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def run_page(entry: Entry, metrics: dict[str, Any], links: list[tuple[str, str, str]],
             progress: dict[str, Any], trials: list[dict[str, str]] | None = None) -> str:
    """A run: status (live while it runs), verdict, the test table, and links ``(id, label, url)`` to its report
    and review page."""
    verdict = (metrics.get("verdict") or {}).get("sentence") if isinstance(metrics.get("verdict"), dict) else None
    link_html = " · ".join(f"<a href='{escape(url)}' id='{escape(ident)}'>{escape(label)}</a>"
                           for ident, label, url in links)
    facts = (f"<p>{escape(entry.kind)} · task {escape(entry.task or '–')} · model {escape(entry.model or '–')}"
             f" · started {escape((entry.started or '–').replace('T', ' '))} · wall "
             f"{escape(table_cells(entry)[8])}</p>")
    body = (f"<h1 id=run-title>{escape(entry.path)}</h1>{facts}<div class=box>status: <b id=status "
            f"class='status-{escape(entry.status)}'>{escape(entry.status)}"
            f"{': ' + escape(entry.detail) if entry.detail else ''}</b><br><span id=progress class=muted>"
            f"{escape(progress_text(progress)) if entry.status == 'running' else ''}</span><div id=curve></div></div>"
            + (f"<p id=verdict class=box>{escape(verdict)}</p>" if verdict else "")
            + (f"<p>{link_html}</p>" if links else "")
            + (metrics_table(metrics) if metrics else "") + trials_table(trials or []))
    script = RUN_JS % (script_json(entry.path), "true" if entry.status == "running" else "false")
    return layout(entry.path, body, script)


# ------------------------------------------------------------------------------------------------ launcher

LAUNCH_JS = """
const result = document.getElementById('launch-result');
function show(ok, text) { result.className = ok ? 'ok' : 'error'; result.textContent = text; }
function payload() {
  return {yaml: document.getElementById('recipe').value, sets: document.getElementById('sets').value,
          name: document.getElementById('recipe-name').value};
}
document.getElementById('upload').addEventListener('change', async ev => {
  const file = ev.target.files[0]; if (!file) return;
  document.getElementById('recipe').value = await file.text();
  document.getElementById('recipe-name').value = file.name;
});
document.getElementById('validate').addEventListener('click', async () => {
  try { const r = await api('/api/validate', payload()); show(true, 'valid: ' + r.summary); }
  catch (e) { show(false, e.message); }
});
document.getElementById('start').addEventListener('click', async () => {
  try { const r = await api('/api/jobs', payload()); show(true, 'started job ' + r.id + ' into ' + r.output_dir);
        refresh(); }
  catch (e) { show(false, e.message); }
});
async function act(id, what) {
  try { await api('/api/jobs/' + encodeURIComponent(id) + '/' + what, {}); } catch (e) { show(false, e.message); }
  refresh();
}
function esc(t) { const d = document.createElement('div'); d.textContent = t ?? ''; return d.innerHTML; }
function jobRow(j) {
  const live = ['running', 'stopping'].includes(j.state);
  return `<tr data-job="${esc(j.id)}"><td>${esc(j.id)}</td><td class="job-state">${esc(j.state)}</td>
    <td class="run-status">${esc(j.run_status || '–')}${j.run_detail ? ': ' + esc(j.run_detail) : ''}</td>
    <td>${j.run ? `<a href="/run?path=${encodeURIComponent(j.run)}">${esc(j.output_dir)}</a>` : esc(j.output_dir)}</td>
    <td>${live ? `<button class=stop onclick="act('${esc(j.id)}', 'stop')">Stop</button>` : ''}${j.resumable && !live ?
      `<button class=resume onclick="act('${esc(j.id)}', 'resume')">Resume</button>` : ''}</td></tr>
    <tr><td colspan=5><pre class=log data-log="${esc(j.id)}"></pre></td></tr>`;
}
async function refresh() {
  const jobs = await api('/api/jobs');
  const body = document.querySelector('#jobs tbody');
  // rows are rebuilt only when a job's state changes, so a button is never replaced under the pointer
  const shape = JSON.stringify(jobs.map(j => [j.id, j.state, j.run_status, j.run_detail, j.resumable, j.run]));
  if (shape !== body.dataset.shape) { body.dataset.shape = shape; body.innerHTML = jobs.map(jobRow).join(''); }
  for (const j of jobs) {
    const pre = [...body.querySelectorAll('pre.log')].find(p => p.dataset.log === j.id);
    if (pre && pre.textContent !== j.log_tail) pre.textContent = j.log_tail;
  }
  document.getElementById('job-count').textContent = jobs.length;
}
refresh(); setInterval(refresh, 1500);
"""


def launch_page() -> str:
    """Paste or upload a recipe, add ``--set`` lines, validate it as ``tailor run`` would, start and stop it."""
    body = ("<h1>Launch a run</h1><p>The recipe is checked exactly as <code>tailor run</code> checks it before any "
            "work (keys, values, data files, model); nothing starts unless it is valid. A job runs <code>tailor run"
            "</code> in the dashboard's working folder; <b>Stop</b> interrupts it the way Ctrl+C does, and "
            "<b>Resume</b> continues it from its last checkpoint (<code>tailor run --resume</code>).</p>"
            "<p><input type=file id=upload accept='.yaml,.yml'> name: <input id=recipe-name value=recipe.yaml></p>"
            "<textarea id=recipe rows=16 placeholder='task: classification&#10;data:&#10;  train: data/train.csv'>"
            "</textarea><p>--set overrides, one KEY=VALUE a line:</p><textarea id=sets rows=3 "
            "placeholder='training.epochs=2'></textarea><p><button id=validate>Validate</button>"
            "<button id=start>Start</button></p><div id=launch-result></div>"
            "<h2>Jobs (<span id=job-count>0</span>)</h2><table id=jobs><thead><tr><th>job</th><th>process</th>"
            "<th>run status</th><th>output_dir</th><th></th></tr></thead><tbody></tbody></table>")
    return layout("launch", body, LAUNCH_JS)


# ------------------------------------------------------------------------------------------------ review

REVIEW_JS = """
const PATH = %s;
const rows = [...document.querySelectorAll('#review tbody tr')];
let current = 0;
function focusRow(i) { rows.forEach(r => r.classList.remove('current')); current = i;
  if (rows[i]) { rows[i].classList.add('current'); rows[i].scrollIntoView({block: 'nearest'}); } }
rows.forEach((r, i) => r.addEventListener('click', () => focusRow(i)));
document.addEventListener('keydown', ev => {
  if (['INPUT', 'SELECT', 'TEXTAREA'].includes(document.activeElement.tagName)) return;
  const select = rows[current] && rows[current].querySelector('select');
  if (ev.key === 'j' || ev.key === 'ArrowDown') focusRow(Math.min(current + 1, rows.length - 1));
  else if (ev.key === 'k' || ev.key === 'ArrowUp') focusRow(Math.max(current - 1, 0));
  else if (select && /^[1-9]$/.test(ev.key) && select.options[+ev.key]) {
    select.selectedIndex = +ev.key; focusRow(Math.min(current + 1, rows.length - 1)); }
  else if (select && ev.key === '0') select.selectedIndex = 0;
});
focusRow(0);
document.getElementById('save').addEventListener('click', async () => {
  const out = document.getElementById('review-result');
  const corrections = rows.map(r => ({id: r.dataset.id, corrected_label: r.querySelector('select').value,
                                      note: r.querySelector('input.note').value})).filter(c => c.corrected_label);
  try {
    const r = await api('/api/review?path=' + encodeURIComponent(PATH), {corrections});
    out.className = 'ok';
    out.textContent = r.applied.map(a => `wrote ${a.path}: ${a.changes.length} labels changed, ${a.unchanged} ` +
      `already right; changelog ${a.changelog}`).join('\\n') + (r.warning ? '\\nwarning: ' + r.warning : '');
  } catch (e) { out.className = 'error'; out.textContent = e.message; }
});
"""


def review_page(rel: str, data: dict[str, Any]) -> str:
    """The examples to check, one row each: the model's prediction and confidence, a label picker and a note."""
    labels = data["labels"]
    options = "<option value=''>(keep)</option>" + "".join(
        f"<option value='{escape(label)}'>{n}: {escape(label)}</option>" for n, label in enumerate(labels, start=1))
    rows = []
    for row in data["rows"]:
        rows.append(f"<tr data-id='{escape(str(row['id']))}' data-split='{escape(str(row.get('split')))}'>"
                    f"<td>{escape(str(row.get('split') or ''))}</td><td class=text>{escape(str(row.get('text')))}"
                    f"</td><td>{escape(str(row.get('label')))}</td><td>{escape(str(row.get('predicted')))}</td>"
                    f"<td class=num>{float(row.get('confidence') or 0):.2f}</td><td>{escape(str(row.get('reason')))}"
                    f"</td><td><select class=corrected>{options}</select></td><td><input class=note></td></tr>")
    warning = f"<p class=warn id=test-warning>{escape(data['test_warning'])}</p>" if data.get("test_warning") else ""
    sources = ", ".join(escape(s) for s in data["sources"]) or "–"
    body = (f"<h1>Review {escape(rel)}</h1><p>The examples <code>tailor review</code> exports (errors, most "
            f"confident first; runs that disagree; least confident). Pick the right label where the gold one is "
            f"wrong (keys: j/k move, 1–{len(labels)} pick, 0 keep), then save: a new version of {sources} is "
            f"written with a changelog, as <code>tailor apply-review</code> does; the original file is not "
            f"touched.</p>{warning}<table id=review><thead><tr><th>split</th><th>text</th><th>label</th>"
            f"<th>predicted</th><th>confidence</th><th>why listed</th><th>corrected label</th><th>note</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table><button id=save>Save corrections</button>"
            f"<div id=review-result></div>")
    return layout(f"review {rel}", body, REVIEW_JS % script_json(rel))


def error_page(message: str, status: int) -> str:
    return layout("error", f"<h1>{status}</h1><p class=error id=error>{escape(message)}</p>")
