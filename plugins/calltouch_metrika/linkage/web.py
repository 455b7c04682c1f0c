"""The linkage report page, served by Airflow's API server (a plugin's ``fastapi_apps``).

Mounted at :data:`URL_PREFIX` by ``plugins/calltouch_metrika_linkage_plugin.py``:

* ``GET {prefix}/linkage`` — the page (HTML; holds no data): a pipeline selector, a 30/90-day selector,
  a plotly chart (stacked bars per day: linked, uploaded but not linked, rejected by reason; the linked
  share as a line on a 0-100 % axis; calls extracted as markers) and a table of the last days with
  links to their DAG runs (``/dags/{dag_id}/runs/{run_id}``). The Airflow navigation (*Browse →
  Linkage report*) shows it inside the UI.
* ``GET {prefix}/api/pipelines`` — ``[{"name", "dag_id", "site_id", "counter_id"}]`` the user may read.
* ``GET {prefix}/api/linkage?pipeline=demo&days=30`` — the page's data: :func:`.query.pipeline_report`.
* ``GET {prefix}/static/plotly.min.js`` — plotly.js from the pinned ``plotly`` wheel
  (``plotly/package_data/plotly.min.js``): the page works with no internet access.

Access: the data endpoints require an Airflow user (the UI's session cookie, or an ``Authorization:
Bearer`` token) allowed to read the pipeline's DAG runs (``is_authorized_dag(GET, RUN)``); plugin apps
are not protected by Airflow by themselves. No token, phone number or call identifier is served.
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

__all__ = ["URL_PREFIX", "create_app"]

#: Where the API server mounts the app (not one of Airflow's reserved prefixes).
URL_PREFIX = "/calltouch-metrika"
PLOTLY_JS = ("plotly", "package_data/plotly.min.js")


async def _user(request: Request) -> Any:
    """The Airflow user of the request (bearer token, else the UI's session cookie); 401 if none."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    auth = request.headers.get("authorization", "")
    token = (
        auth[7:].strip() if auth.lower().startswith("bearer ") else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    )
    return await resolve_user_from_token(token)


def _may_read_runs(user: Any, dag_id: str) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
    )


def _pipelines() -> list[Any]:
    from calltouch_metrika.linkage.query import calls_pipelines

    return calls_pipelines()


def create_app() -> FastAPI:
    """The FastAPI app of the page, its data endpoints and plotly.js."""
    app = FastAPI(title="calltouch-metrika linkage report", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/linkage", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})

    @app.get("/static/plotly.min.js")
    async def plotly_js() -> Response:
        package, name = PLOTLY_JS
        data = resources.files(package).joinpath(name).read_bytes()
        return Response(
            data, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
        )

    @app.get("/api/pipelines")
    async def pipelines(request: Request) -> JSONResponse:
        user = await _user(request)
        found = await asyncio.to_thread(_pipelines)
        allowed = [
            {"name": p.name, "dag_id": p.dag_id, "site_id": p.site_id, "counter_id": p.counter_id}
            for p in found
            if _may_read_runs(user, p.dag_id)
        ]
        return JSONResponse(allowed)

    @app.get("/api/linkage")
    async def linkage(
        request: Request,
        pipeline: str = Query(..., description="pipeline name (pipelines.yaml)"),
        days: int = Query(30, ge=1, le=366, description="local days ending yesterday"),
    ) -> JSONResponse:
        from calltouch_metrika.linkage.query import pipeline_report

        user = await _user(request)
        chosen = next((p for p in await asyncio.to_thread(_pipelines) if p.name == pipeline), None)
        if chosen is None or not _may_read_runs(user, chosen.dag_id):
            # the same answer for "no such pipeline" and "not yours": names are not disclosed
            raise HTTPException(status_code=404, detail=f"no pipeline {pipeline!r} you may read")
        report = await asyncio.to_thread(pipeline_report, chosen, days)
        return JSONResponse(json.loads(json.dumps(report, default=str)))

    return app


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Linkage report · calltouch-metrika</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<script src="static/plotly.min.js"></script>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 16px 24px;
         color: #1f2933; background: #fff; }
  h1 { font-size: 22px; margin: 0 0 4px; }
  .sub { color: #52606d; margin: 0 0 14px; font-size: 14px; }
  .controls { display: flex; gap: 18px; align-items: center; margin-bottom: 10px; font-size: 14px; }
  select { font-size: 14px; padding: 3px 6px; }
  .totals { display: flex; gap: 12px; margin: 8px 0 4px; flex-wrap: wrap; }
  .card { border: 1px solid #d9e2ec; border-radius: 6px; padding: 6px 12px; min-width: 110px; }
  .card b { display: block; font-size: 20px; }
  .card span { color: #52606d; font-size: 12px; }
  #chart { width: 100%; height: 430px; }
  table { border-collapse: collapse; font-size: 13px; margin-top: 6px; width: 100%; }
  th, td { border-bottom: 1px solid #e4e7eb; padding: 4px 8px; text-align: right; white-space: nowrap; }
  th { background: #f5f7fa; position: sticky; top: 0; }
  td.l, th.l { text-align: left; white-space: normal; }
  td:first-child { white-space: nowrap; }
  td:last-child { word-break: break-all; min-width: 150px; }
  .PROCESSED { color: #1b7f3b; } .LINKAGE_FAILURE { color: #c62828; font-weight: 600; }
  #message { color: #c62828; margin: 8px 0; }
  a { color: #1565c0; }
</style>
</head>
<body>
<h1>Linkage report</h1>
<p class="sub">Calls extracted from Calltouch, uploaded to Yandex Metrika, rejected (by reason) and linked
to visits, per local day. Written when a day's upload reaches Metrika's final status.</p>
<div class="controls">
  <label>Pipeline <select id="pipeline"></select></label>
  <label>Period <select id="days"><option value="30">last 30 days</option>
    <option value="90">last 90 days</option></select></label>
  <span id="range" class="sub" style="margin:0"></span>
</div>
<div id="message"></div>
<div class="totals" id="totals"></div>
<div id="chart"></div>
<h2 style="font-size:16px;margin:12px 0 0">Last days</h2>
<table id="days-table">
  <thead><tr>
    <th class="l">Day</th><th>Extracted</th><th>Uploaded</th><th>Rejected</th><th class="l">Rejected by reason</th>
    <th class="l">Metrika status</th><th>Rows in file</th><th>Accepted</th><th>Linked</th><th>Linked share</th>
    <th>Static</th><th>Dynamic</th><th>To final status</th><th class="l">DAG run</th>
  </tr></thead>
  <tbody></tbody>
</table>
<script>
"use strict";
const REASON_COLORS = ["#f4a261", "#e76f51", "#9c6644", "#e9c46a", "#b5838d", "#8d99ae", "#d62828",
                       "#6d597a", "#ffb4a2", "#adb5bd", "#a68a64"];
const fmt = (v) => (v === null || v === undefined) ? "–" : String(v);
const pct = (v) => (v === null || v === undefined) ? "–" : (100 * v).toFixed(1) + " %";
function dur(s) {
  if (s === null || s === undefined) return "–";
  if (s < 120) return Math.round(s) + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function text(tag, value, cls) {
  const el = document.createElement(tag);
  el.textContent = value;
  if (cls) el.className = cls;
  return el;
}
function message(msg) { document.getElementById("message").textContent = msg || ""; }

async function getJSON(url) {
  const r = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
  if (r.status === 401 || r.status === 403) {
    throw new Error("Log in to Airflow to see the report (" + r.status + ").");
  }
  if (!r.ok) throw new Error("The report could not be loaded: HTTP " + r.status);
  return r.json();
}

function allDays(first, last) {
  const out = [];
  for (let d = new Date(first + "T00:00:00Z"); d <= new Date(last + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + 1)) {
    out.push(d.toISOString().slice(0, 10));
  }
  return out;
}

function drawChart(report) {
  const rows = report.rows;
  const x = rows.map((r) => r.day);
  const linked = rows.map((r) => r.linked_quantity);
  const notLinked = rows.map((r) => r.linked_quantity === null ? r.uploaded : r.uploaded - r.linked_quantity);
  const traces = [
    {type: "bar", name: "uploaded, linked", x, y: linked, marker: {color: "#2e7d32"},
     hovertemplate: "%{x}<br>linked: %{y}<extra></extra>"},
    {type: "bar", name: "uploaded, not linked", x, y: notLinked, marker: {color: "#90caf9"},
     hovertemplate: "%{x}<br>uploaded, not linked: %{y}<extra></extra>"},
  ];
  report.reasons.forEach((reason, i) => {
    traces.push({type: "bar", name: "rejected: " + reason, x,
                 y: rows.map((r) => r.rejected_by_reason[reason] || 0),
                 marker: {color: REASON_COLORS[i % REASON_COLORS.length]},
                 hovertemplate: "%{x}<br>rejected (" + reason + "): %{y}<extra></extra>"});
  });
  traces.push({type: "scatter", mode: "markers", name: "extracted", x, y: rows.map((r) => r.extracted),
               marker: {symbol: "line-ew-open", size: 18, color: "#1f2933", line: {width: 2}},
               hovertemplate: "%{x}<br>extracted: %{y}<extra></extra>"});
  traces.push({type: "scatter", mode: "lines+markers", name: "linked share", x,
               y: rows.map((r) => r.linked_share === null ? null : 100 * r.linked_share), yaxis: "y2",
               line: {color: "#6a1b9a", width: 2}, connectgaps: false,
               hovertemplate: "%{x}<br>linked share: %{y:.1f} %<extra></extra>"});
  const days = allDays(report.first, report.last);
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const step = days.length > 45 ? 7 : days.length > 20 ? 2 : 1;
  const ticks = days.filter((d, i) => (days.length - 1 - i) % step === 0);
  const layout = {
    barmode: "stack", bargap: 0.25, margin: {l: 56, r: 64, t: 56, b: 56},
    legend: {orientation: "h", x: 0, y: 1.12, font: {size: 12}},
    xaxis: {type: "category", categoryorder: "array", categoryarray: days, range: [-0.5, days.length - 0.5],
            tickvals: ticks, ticktext: ticks.map((d) => Number(d.slice(8)) + " " + MONTHS[Number(d.slice(5, 7)) - 1]),
            tickangle: 0, title: {text: "local day (" + report.timezone + ")", standoff: 8}},
    yaxis: {title: {text: "calls"}, rangemode: "tozero"},
    yaxis2: {title: {text: "linked share, %"}, overlaying: "y", side: "right", range: [0, 110],
             tickvals: [0, 25, 50, 75, 100], ticksuffix: " %", showgrid: false},
  };
  Plotly.react("chart", traces, layout, {displaylogo: false, responsive: true});
}

function drawTotals(report) {
  const t = report.totals;
  const box = document.getElementById("totals");
  box.replaceChildren();
  [["extracted", t.extracted], ["uploaded", t.uploaded], ["rejected", t.rejected],
   ["linked", fmt(t.linked_quantity)], ["linked share", pct(t.linked_share)],
   ["days reported", t.days_reported]].forEach(([label, value]) => {
    const card = text("div", "", "card");
    card.append(text("b", String(value)), text("span", label));
    box.append(card);
  });
  document.getElementById("range").textContent = report.first + " … " + report.last;
}

function drawTable(report) {
  const body = document.querySelector("#days-table tbody");
  body.replaceChildren();
  [...report.rows].reverse().forEach((r) => {
    const tr = document.createElement("tr");
    tr.dataset.day = r.day;
    const reasons = Object.entries(r.rejected_by_reason).map(([k, v]) => k + " " + v).join(", ") || "–";
    const uploaded = r.uploaded_topups ? r.uploaded + " (" + r.uploaded_first + " + " + r.uploaded_topups + " top-up)" : String(r.uploaded);
    tr.append(text("td", r.day, "l"), text("td", fmt(r.extracted)), text("td", uploaded),
              text("td", fmt(r.rejected)), text("td", reasons, "l"),
              text("td", fmt(r.status), "l " + (r.status || "")), text("td", fmt(r.source_quantity)),
              text("td", fmt(r.line_quantity)), text("td", fmt(r.linked_quantity)),
              text("td", pct(r.linked_share)), text("td", fmt(r.static_calls_quantity)),
              text("td", fmt(r.dynamic_calls_quantity)), text("td", dur(r.seconds_to_final)));
    const runs = text("td", "", "l");
    r.runs.forEach((run, i) => {
      const a = document.createElement("a");
      a.href = "../dags/" + encodeURIComponent(run.dag_id) + "/runs/" + encodeURIComponent(run.run_id);
      a.target = "_top";
      a.textContent = run.run_id;
      if (i) runs.append(document.createElement("br"));
      runs.append(a);
    });
    tr.append(runs);
    body.append(tr);
  });
  if (!report.rows.length) {
    const tr = document.createElement("tr");
    const td = text("td", "No reported day in this period yet: a day appears once its upload is final.", "l");
    td.colSpan = 14;
    tr.append(td);
    body.append(tr);
  }
}

async function load() {
  const pipeline = document.getElementById("pipeline").value;
  const days = document.getElementById("days").value;
  const params = new URLSearchParams({pipeline, days});
  history.replaceState(null, "", "?" + params.toString());
  try {
    const report = await getJSON("api/linkage?" + params.toString());
    message("");
    drawTotals(report);
    drawChart(report);
    drawTable(report);
    document.body.dataset.loaded = pipeline + ":" + days;
  } catch (err) {
    message(err.message);
  }
}

async function start() {
  const wanted = new URLSearchParams(location.search);
  try {
    const pipelines = await getJSON("api/pipelines");
    const select = document.getElementById("pipeline");
    pipelines.forEach((p) => {
      const o = text("option", p.name + " (site " + p.site_id + " → counter " + p.counter_id + ")");
      o.value = p.name;
      select.append(o);
    });
    if (!pipelines.length) { message("No pipeline you may read."); return; }
    if (wanted.get("pipeline")) select.value = wanted.get("pipeline");
    if (wanted.get("days") === "90") document.getElementById("days").value = "90";
    select.addEventListener("change", load);
    document.getElementById("days").addEventListener("change", load);
    await load();
  } catch (err) {
    message(err.message);
  }
}
start();
</script>
</body>
</html>
"""
