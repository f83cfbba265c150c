// "Paste an alert": one Suricata EVE or Zeek conn.log record, sent as the body of POST /flows and
// POST /data.pcap with the session. The collector answers with X-PAR-Query, the equivalent GET: the
// page's query form is filled with it and asked, so the flows show in the usual table.
"use strict";

(function () {
  const $ = (selector) => document.querySelector(selector);
  const box = $("#alert-form");
  const query = $("#query");
  const statusLine = $("#alert-status");
  const asked = $("#alert-query");
  const message = $("#message");
  const FIELDS = ["src_addr", "src_port", "dst_addr", "dst_port", "proto", "community_id", "start_time", "end_time"];

  function csrfToken() {
    const field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function showError(text) {
    message.textContent = text;
    message.hidden = false;
  }

  function nodeId() {
    return query.elements.node_id.value.trim() || "all";
  }

  async function post(path, extra) {
    const record = box.elements.record.value.trim();
    if (!record) throw new Error("paste one Suricata EVE or Zeek conn.log record first");
    const params = new URLSearchParams({ node_id: nodeId(), ...extra });
    let response;
    try {
      response = await fetch(`${path}?${params}`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
        body: record,
      });
    } catch (e) {
      throw new Error(`the collector cannot be reached (${e.message})`);
    }
    if (response.status === 401) window.location.assign("/ui/login?next=/ui/");
    const shown = response.headers.get("X-PAR-Query");
    if (shown) asked.textContent = `GET ${path}?${shown}`;
    const note = response.headers.get("X-PAR-Query-Note");
    statusLine.textContent = note || "";
    if (!response.ok) {
      let text = `HTTP ${response.status} ${response.statusText}`.trim();
      try {
        const body = await response.json();
        if (body && typeof body.error === "string") text = body.error;
      } catch (e) { /* not JSON */ }
      throw new Error(text);
    }
    return response;
  }

  async function findFlows(event) {
    event.preventDefault();
    message.hidden = true;
    try {
      const response = await post("/flows", {});
      // The equivalent GET, into the page's form: its own table, timeline and downloads take over.
      const params = new URLSearchParams(response.headers.get("X-PAR-Query") || "");
      for (const name of FIELDS) query.elements[name].value = params.get(name) || "";
      query.requestSubmit();
    } catch (e) {
      showError(e.message);
    }
  }

  async function download() {
    message.hidden = true;
    try {
      const format = (document.querySelector("input[name=format]:checked") || { value: "pcap" }).value;
      const response = await post("/data.pcap", { format });
      statusLine.textContent = "Downloading…";
      const blob = await response.blob();
      const disposition = response.headers.get("Content-Disposition") || "";
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = (/filename="([^"]+)"/.exec(disposition) || [])[1] || "alert.pcap";
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60000);
      statusLine.textContent = `Saved ${link.download} (${blob.size} bytes).`;
    } catch (e) {
      statusLine.textContent = "";
      showError(e.message);
    }
  }

  box.addEventListener("submit", findFlows);
  $("#alert-download").addEventListener("click", download);
})();
