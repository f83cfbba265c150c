// The page's exports: "Download everything matched" starts a job (POST /exports) instead of holding
// the answer in the browser's memory; the user's jobs are listed with a progress bar, and a finished
// job's file is a plain link the browser saves to disk itself.
"use strict";

(function () {
  const POLL_MS = 1500;
  const $ = (selector) => document.querySelector(selector);
  const table = $("#export-jobs");
  const tbody = table.querySelector("tbody");
  const empty = $("#exports-empty");
  const downloadStatus = $("#download-status");
  let timer = null;

  function csrfToken() {
    const field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  async function apiError(response) {
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") return body.error;
    } catch (e) { /* not JSON */ }
    return `HTTP ${response.status} ${response.statusText}`.trim();
  }

  async function call(method, path, body) {
    const response = await fetch(path, {
      method, body, credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    });
    if (response.status === 401) window.location.assign("/ui/login?next=/ui/");
    if (!response.ok) throw new Error(await apiError(response));
    return response.status === 204 ? null : response.json();
  }

  function size(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return i ? `${n.toFixed(1)} ${units[i]}` : `${n} B`;
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.append(td);
    return td;
  }

  function button(label, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "one";
    b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  }

  function render(jobs) {
    tbody.replaceChildren();
    table.hidden = jobs.length === 0;
    empty.hidden = jobs.length !== 0;
    for (const job of jobs) {
      const row = document.createElement("tr");
      row.dataset.id = job.id;
      row.dataset.state = job.state;
      cell(row, String(job.id));
      const stateCell = cell(row, job.state, job.state === "failed" ? "failed" : "");
      if (job.error && (job.state === "failed" || job.state === "queued")) stateCell.title = job.error;
      const progressCell = cell(row, "");
      const bar = document.createElement("progress");
      bar.max = 1;
      bar.value = job.state === "done" ? 1 : job.progress;
      bar.setAttribute("aria-label", `export ${job.id} progress`);
      progressCell.append(bar, ` ${Math.round((job.state === "done" ? 1 : job.progress) * 100)}%`);
      cell(row, String(job.packets), "num");
      cell(row, size(job.bytes), "num");
      cell(row, (job.created || "").replace("T", " ").slice(0, 19));
      cell(row, job.query, "query");
      const actions = cell(row, "", "actions");
      if (job.download) {
        const link = document.createElement("a");
        link.href = job.download;
        link.textContent = "Download";
        link.setAttribute("download", "");
        actions.append(link);
      }
      if (job.state === "queued" || job.state === "running") {
        actions.append(button("Cancel", () => remove(job.id)));
      } else if (job.state === "done") {
        actions.append(button("Delete", () => remove(job.id)));
      }
      tbody.append(row);
    }
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const answer = await call("GET", "/exports");
      render(answer.exports);
      if (answer.exports.some((job) => job.state === "queued" || job.state === "running")) {
        timer = setTimeout(refresh, POLL_MS);
      }
    } catch (e) {
      downloadStatus.textContent = `Exports: ${e.message}`;
    }
  }

  async function remove(id) {
    try {
      await call("DELETE", `/exports/${id}`);
    } catch (e) {
      downloadStatus.textContent = e.message;
    }
    refresh();
  }

  async function exportMatched() {
    const params = window.parPage && window.parPage.exportParams();
    if (!params) return;
    try {
      const job = await call("POST", "/exports", new URLSearchParams(params));
      downloadStatus.textContent = `Export ${job.id} ${job.state}: its progress and file are listed under Exports below.`;
    } catch (e) {
      downloadStatus.textContent = "";
      const message = $("#message");
      message.textContent = e.message;
      message.hidden = false;
    }
    refresh();
  }

  $("#download-all").addEventListener("click", exportMatched);
  refresh();
})();
