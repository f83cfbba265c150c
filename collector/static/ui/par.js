// The analysts' page: asks the collector's API with the session cookie, draws what it answers.
// No library, no network beyond this collector.
"use strict";

(function () {
  const QUERY = ["src_addr", "src_port", "dst_addr", "dst_port", "proto", "community_id",
    "start_time", "end_time", "node_id", "limit"];
  const PROTOCOLS = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6", 132: "sctp" };
  const BINS = 60;

  const $ = (selector) => document.querySelector(selector);
  const form = $("#query");
  const message = $("#message");
  const status = $("#status");
  const results = $("#results");
  const tbody = $("#flows tbody");
  const svg = $("#timeline");
  const downloadStatus = $("#download-status");
  const state = { flows: [], window: null, asked: {}, sort: { key: "first", dir: 1 }, selected: new Set() };

  // ------------------------------------------------------------ asking the API

  function formParams() {
    const params = {};
    for (const name of QUERY) {
      const value = form.elements[name].value.trim();
      if (value) params[name] = value;
    }
    return params;
  }

  function queryString(params) {
    return new URLSearchParams(params).toString();
  }

  async function apiError(response) {
    // The API's own words: {"error": "..."}; anything else (a proxy's page) by its status.
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") return body.error;
    } catch (e) { /* not JSON */ }
    return `HTTP ${response.status} ${response.statusText}`.trim();
  }

  async function get(path, params) {
    let response;
    try {
      response = await fetch(`${path}?${queryString(params)}`, {
        credentials: "same-origin", headers: { Accept: "application/json" },
      });
    } catch (e) {
      throw new Error(`the collector cannot be reached (${e.message})`);
    }
    if (response.status === 401) {  // the session ended: log in again, and come back to this query
      window.location.assign("/ui/login?next=" + encodeURIComponent(location.pathname + location.search));
    }
    if (!response.ok) throw new Error(await apiError(response));
    return response;
  }

  function showError(text) {
    message.textContent = text;
    message.hidden = false;
    markField(text);
    if (text.startsWith("no capture data")) suggestHoldings();
  }

  function clearError() {
    message.hidden = true;
    message.textContent = "";
    markField("");
  }

  async function findFlows() {
    clearError();
    const params = formParams();
    history.replaceState(null, "", "?" + queryString(params));
    status.textContent = "Asking…";
    try {
      const response = await get("/flows", params);
      const answer = await response.json();
      state.asked = params;
      state.window = answer.window;
      state.flows = (answer.flows || []).map((flow, i) => ({ ...flow, _id: i }));
      // Bytes over time of everything matched, from the nodes' indexes (not only the rows listed).
      state.histogram = Array.isArray(answer.histogram) && answer.histogram.length === BINS ? answer.histogram : null;
      state.selected.clear();
      render(answer);
    } catch (e) {
      status.textContent = "";
      showError(e.message);
      results.hidden = true;
    }
  }

  // ------------------------------------------------------------ showing the answer

  function render(answer) {
    const flows = state.flows;
    const total = flows.reduce((sum, f) => sum + (f.bytes || 0), 0);
    let text = `${flows.length} flow${flows.length === 1 ? "" : "s"}, ${size(total)}, ` +
      `from ${shortTime(state.window.start)} to ${shortTime(state.window.end)} UTC.`;
    if (answer.truncated) text += ` More flows matched than listed: narrow the query or raise limit.`;
    if (answer.truncated && state.histogram) {
      text += ` ${size(state.histogram.reduce((sum, b) => sum + b, 0))} matched in all (the timeline).`;
    }
    status.textContent = text;
    markPartial(answer);
    const failed = Object.entries(answer.failed || {});
    if (failed.length) showError("Left out: " + failed.map(([node, why]) => `node ${node}: ${why}`).join("; "));
    results.hidden = false;
    renderTable();
    drawTimeline();
    $("#cli").textContent = cliLine(windowParams(state.asked));
  }

  function protoName(proto) {
    return PROTOCOLS[proto] || String(proto ?? "");
  }

  function endpoint(addr, port) {
    if (port === null || port === undefined || port === "") return addr;
    return addr.includes(":") ? `[${addr}]:${port}` : `${addr}:${port}`;
  }

  function shortTime(iso) {
    // 2026-12-01T05:40:00.123456Z -> 2026-12-01 05:40:00.123
    const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d{1,3})?\d*Z$/.exec(iso || "");
    return m ? `${m[1]} ${m[2]}${m[3] || ""}` : String(iso || "");
  }

  function size(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i ? `${n.toFixed(1)} ${units[i]}` : `${n} B`;
  }

  const SORT_VALUES = {
    node: (f) => Number(f.node),
    proto: (f) => protoName(f.proto),
    src: (f) => endpoint(f.src_addr, f.src_port),
    dst: (f) => endpoint(f.dst_addr, f.dst_port),
    first: (f) => f.first, last: (f) => f.last,
    packets: (f) => f.packets, bytes: (f) => f.bytes,
    community_id: (f) => f.community_id || "",
  };

  function sortedFlows() {
    const value = SORT_VALUES[state.sort.key];
    return [...state.flows].sort((a, b) => {
      const x = value(a), y = value(b);
      return (x < y ? -1 : x > y ? 1 : a._id - b._id) * state.sort.dir;
    });
  }

  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function renderTable() {
    tbody.textContent = "";
    for (const th of document.querySelectorAll("#flows th[data-key]")) {
      if (th.dataset.key === state.sort.key) {
        th.setAttribute("aria-sort", state.sort.dir > 0 ? "ascending" : "descending");
      } else {
        th.removeAttribute("aria-sort");
      }
    }
    if (!state.flows.length) {
      const row = tbody.insertRow();
      const td = cell(row, "No flow matched in this window.", "empty");
      td.colSpan = 11;
    }
    for (const flow of sortedFlows()) {
      const row = tbody.insertRow();
      row.dataset.id = flow._id;
      const pick = document.createElement("input");
      pick.type = "checkbox";
      pick.checked = state.selected.has(flow._id);
      pick.setAttribute("aria-label", `Select ${endpoint(flow.src_addr, flow.src_port)} to ${endpoint(flow.dst_addr, flow.dst_port)}`);
      pick.addEventListener("change", () => {
        if (pick.checked) state.selected.add(flow._id); else state.selected.delete(flow._id);
        selectionChanged();
      });
      row.insertCell().append(pick);
      cell(row, flow.node);
      cell(row, protoName(flow.proto));
      cell(row, endpoint(flow.src_addr, flow.src_port), "addr");
      cell(row, endpoint(flow.dst_addr, flow.dst_port), "addr");
      cell(row, shortTime(flow.first), "time");
      cell(row, shortTime(flow.last), "time");
      const packets = cell(row, (flow.approximate ? "~" : "") + flow.packets, "num");
      if (flow.approximate) packets.title = "approximate: a capture file reaches outside the window";
      cell(row, flow.bytes.toLocaleString("en-US"), "num").title = size(flow.bytes);
      cell(row, flow.community_id || "", "cid");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "pcap";
      button.className = "one";
      button.setAttribute("aria-label", `Download the packets of ${endpoint(flow.src_addr, flow.src_port)} to ${endpoint(flow.dst_addr, flow.dst_port)}`);
      button.addEventListener("click", () => downloadFlows([flow]));
      row.insertCell().append(button);
    }
    selectionChanged();
  }

  function selectionChanged() {
    const n = state.selected.size;
    const button = $("#download-selection");
    button.disabled = n === 0;
    button.textContent = n ? `Download selection (${n})` : "Download selection";
    const all = $("#select-all");
    all.checked = n > 0 && n === state.flows.length;
    all.indeterminate = n > 0 && n < state.flows.length;
    drawTimeline();
  }

  // ------------------------------------------------------------ the timeline

  const NS = "http://www.w3.org/2000/svg";

  function svgElement(name, attributes, text) {
    const element = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function binBytes(flows, t0, span) {
    // Each flow's bytes spread evenly over its first..last, cut into BINS equal slices of the window.
    const bins = new Array(BINS).fill(0);
    const counts = new Array(BINS).fill(0);
    const width = span / BINS;
    for (const flow of flows) {
      let a = Math.max(Date.parse(flow.first), t0), b = Math.min(Date.parse(flow.last), t0 + span);
      if (!(b >= a)) b = a;
      const first = Math.min(BINS - 1, Math.max(0, Math.floor((a - t0) / width)));
      const last = Math.min(BINS - 1, Math.max(0, Math.floor((b - t0) / width)));
      for (let i = first; i <= last; i++) {
        const share = b > a ? (Math.min(b, t0 + (i + 1) * width) - Math.max(a, t0 + i * width)) / (b - a) : 1;
        if (share > 0 || first === last) { bins[i] += flow.bytes * (first === last ? 1 : share); counts[i]++; }
      }
    }
    return { bins, counts, width };
  }

  function clock(ms) {
    return new Date(ms).toISOString().slice(11, 19);
  }

  function drawTimeline() {
    if (!state.window) return;
    svg.textContent = "";
    const w = Math.max(svg.clientWidth || 1000, 300), h = 170, top = 10, bottom = 24, left = 64;
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("preserveAspectRatio", "xMinYMin meet");
    const t0 = Date.parse(state.window.start), t1 = Date.parse(state.window.end);
    const span = Math.max(t1 - t0, 1);
    const listed = binBytes(state.flows, t0, span);
    const { counts, width } = listed;
    const bins = state.histogram || listed.bins;
    const chosen = state.flows.filter((f) => state.selected.has(f._id));
    const picked = binBytes(chosen, t0, span).bins;
    const max = Math.max(...bins, 1);
    const plotW = w - left - 8, plotH = h - top - bottom, barW = plotW / BINS;
    svg.append(svgElement("line", { x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH, class: "axis" }));
    svg.append(svgElement("text", { x: left - 6, y: top + 10, class: "label end" }, size(Math.round(max))));
    svg.append(svgElement("text", { x: left - 6, y: top + plotH, class: "label end" }, "0"));
    for (const [x, t, anchor] of [[left, t0, "start"], [left + plotW / 2, t0 + span / 2, "middle"], [left + plotW, t1, "end"]]) {
      svg.append(svgElement("text", { x, y: h - 6, class: `label ${anchor}` }, clock(t)));
    }
    bins.forEach((bytes, i) => {
      if (!bytes) return;
      const barH = Math.max(1, (bytes / max) * plotH);
      const x = left + i * barW;
      const bar = svgElement("rect", {
        x: x + 0.5, y: top + plotH - barH, width: Math.max(barW - 1, 1), height: barH, class: "bar",
        "data-bin": i,
      });
      const from = t0 + i * width;
      const among = state.histogram ? `, ${counts[i]} of the flows listed` : ` in ${counts[i]} flow${counts[i] === 1 ? "" : "s"}`;
      bar.append(svgElement("title", {}, `${clock(from)}–${clock(from + width)} UTC: ${size(Math.round(bytes))}${among}`));
      bar.addEventListener("click", () => zoomTo(from, from + width));
      svg.append(bar);
      if (picked[i]) {
        const pickH = Math.max(1, (picked[i] / max) * plotH);
        svg.append(svgElement("rect", {
          x: x + 0.5, y: top + plotH - pickH, width: Math.max(barW - 1, 1), height: pickH, class: "bar picked",
        }));
      }
    });
  }

  function zoomTo(from, to) {
    form.elements.start_time.value = new Date(Math.floor(from)).toISOString();
    form.elements.end_time.value = new Date(Math.ceil(to)).toISOString();
    form.scrollIntoView({ block: "start" });  // the window asked and the status stay in view
    findFlows();
  }

  // ------------------------------------------------------------ downloads

  function chosenFormat() {
    return form.ownerDocument.querySelector("input[name=format]:checked").value;
  }

  function windowParams(params) {
    // The window the table shows, as the API resolved it: relative times stay what they were.
    const fixed = { ...params };
    delete fixed.limit;
    if (state.window) { fixed.start_time = state.window.start; fixed.end_time = state.window.end; }
    return fixed;
  }

  function flowParams(flow) {
    const params = {
      node_id: flow.node, src_addr: flow.src_addr, dst_addr: flow.dst_addr,
      start_time: state.window.start, end_time: state.window.end,
    };
    if (flow.src_port !== null && flow.src_port !== undefined) params.src_port = flow.src_port;
    if (flow.dst_port !== null && flow.dst_port !== undefined) params.dst_port = flow.dst_port;
    if (flow.proto !== null && flow.proto !== undefined) params.proto = flow.proto;
    return params;
  }

  async function fetchPcap(params, label) {
    const response = await get("/data.pcap", { ...params, format: chosenFormat() });
    const estimate = Number(response.headers.get("X-PAR-Estimate-Bytes")) || 0;
    const failed = response.headers.get("X-PAR-Nodes-Failed");
    const reader = response.body.getReader();
    const chunks = [];
    let received = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.length;
      downloadStatus.textContent = `${label}: ${size(received)}` + (estimate ? ` of at most ${size(estimate)}` : "");
    }
    const disposition = response.headers.get("Content-Disposition") || "";
    const name = (/filename="([^"]+)"/.exec(disposition) || [])[1];
    return { bytes: await new Blob(chunks).arrayBuffer(), name, failed };
  }

  function save(blob, name) {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  }

  function pcapLayout(bytes) {
    // Classic pcap: the magic says byte order and time unit; records follow the 24-byte header.
    const view = new DataView(bytes);
    if (bytes.byteLength < 24) return null;
    const magic = view.getUint32(0, false);
    const little = magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1;
    if (!little && magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) return null;
    return { magic, little, linktype: view.getUint32(20, little) };
  }

  function pcapRecords(bytes, layout) {
    const view = new DataView(bytes);
    const records = [];
    for (let at = 24; at + 16 <= bytes.byteLength;) {
      const length = view.getUint32(at + 8, layout.little);
      records.push({ sec: view.getUint32(at, layout.little), frac: view.getUint32(at + 4, layout.little), bytes, at, end: at + 16 + length });
      at += 16 + length;
    }
    return records;
  }

  function mergeCaptures(parts) {
    // One flow: as answered. Several: one pcap merged by time when every answer has one layout;
    // pcapng answers follow one another as sections (a pcapng file may hold several).
    if (parts.length === 1) return new Blob([parts[0].bytes]);
    const layouts = parts.map((part) => pcapLayout(part.bytes));
    if (layouts.some((layout) => layout === null)) return new Blob(parts.map((part) => part.bytes));
    const first = layouts[0];
    if (layouts.some((l) => l.magic !== first.magic || l.linktype !== first.linktype)) {
      throw new Error("these flows were captured with different link types or time units: choose pcapng to download them together");
    }
    const records = parts.flatMap((part, i) => pcapRecords(part.bytes, layouts[i]));
    records.sort((a, b) => a.sec - b.sec || a.frac - b.frac);
    const pieces = [new Uint8Array(parts[0].bytes, 0, 24)];
    for (const r of records) pieces.push(new Uint8Array(r.bytes, r.at, r.end - r.at));
    return new Blob(pieces);
  }

  async function downloadFlows(flows) {
    clearError();
    const format = chosenFormat();
    try {
      const parts = [];
      for (const [i, flow] of flows.entries()) {
        parts.push(await fetchPcap(flowParams(flow), flows.length > 1 ? `flow ${i + 1} of ${flows.length}` : "flow"));
      }
      const blob = mergeCaptures(parts);
      const name = flows.length === 1 && parts[0].name ? parts[0].name : `selection-${flows.length}-flows.${format}`;
      save(new Blob([blob], { type: "application/vnd.tcpdump.pcap" }), name.replace(/\.pcap$/, "." + format));
      downloadStatus.textContent = `Saved ${name.replace(/\.pcap$/, "." + format)} (${size(blob.size)}).`;
      reportFailed(parts);
    } catch (e) {
      downloadStatus.textContent = "";
      showError(e.message);
    }
  }

  // "Download everything matched" runs as an export job (exports.js): the window as the table shows it.
  window.parPage = {
    exportParams: () => (state.window ? { ...windowParams(state.asked), format: chosenFormat() } : null),
  };

  function reportFailed(parts) {
    const failed = parts.map((part) => part.failed).filter(Boolean);
    if (failed.length) showError("Left out of the download: " + failed.join("; "));
  }

  function shellQuote(text) {
    return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${String(text).replace(/'/g, "'\\''")}'`;
  }

  function cliLine(params) {
    const words = ["par", "pcap"];
    for (const [name, value] of Object.entries(params)) words.push(`--${name.replace(/_/g, "-")}`, shellQuote(value));
    if (chosenFormat() !== "pcap") words.push("--format", chosenFormat());
    words.push("-o", "out." + chosenFormat());
    return words.join(" ");
  }

  // ------------------------------------------------------------ what the answer leaves out

  // The field an error names ("invalid dst_port: ...", "missing parameter: node_id"), marked.
  function markField(text) {
    for (const name of QUERY) form.elements[name].removeAttribute("aria-invalid");
    const named = QUERY.find((name) => new RegExp(`(^|[^a-z_])${name}([^a-z_]|$)`).test(text));
    if (named) form.elements[named].setAttribute("aria-invalid", "true");
  }

  // The timeline is drawn from the flows listed: say so when they are not all that matched.
  function markPartial(answer) {
    const note = $("#timeline-partial");
    const failed = Object.keys(answer.failed || {});
    const why = [];
    if (answer.truncated && !state.histogram) why.push(`only the ${state.flows.length} flows listed, not all that matched`);
    if (failed.length) why.push(`without node${failed.length === 1 ? "" : "s"} ${failed.join(", ")}`);
    note.textContent = why.length ? `Partial: ${why.join("; ")}.` : "";
    note.hidden = !why.length;
    results.classList.toggle("partial", why.length > 0);
  }

  // The time each granted node holds (its /status), shown under the form and offered on a miss.
  const holdings = {};

  async function loadHoldings() {
    const ids = [...document.querySelectorAll("#nodes option")].map((o) => o.value).filter((v) => v !== "all");
    await Promise.all(ids.map(async (id) => {
      try {
        const answer = await (await get(`/nodes/${id}/status`, {})).json();
        const files = answer.files || {};
        // The file being written holds from its start to its last write.
        const live = (answer.capture && answer.capture.live_file) || null;
        const start = files.oldest || (live && live.started), end = (live && live.modified) || files.newest;
        const iso = (t) => new Date(t).toISOString();
        if (start && end) holdings[id] = { start: iso(start), end: iso(end) };
      } catch (e) { /* a node down: its range is not shown */ }
    }));
    const shown = Object.entries(holdings).map(([id, r]) => `node ${id}: ${shortTime(r.start)} to ${shortTime(r.end)} UTC`);
    $("#holdings").textContent = shown.length ? `Captures held: ${shown.join("; ")}.` : "";
  }

  function suggestHoldings() {
    const ranges = Object.values(holdings);
    if (!ranges.length) return;
    const start = ranges.map((r) => r.start).sort()[0], end = ranges.map((r) => r.end).sort().at(-1);
    const use = document.createElement("button");
    use.type = "button";
    use.id = "use-holdings";
    use.textContent = `Ask ${shortTime(start)} to ${shortTime(end)} UTC instead`;
    use.addEventListener("click", () => {
      form.elements.start_time.value = start;
      form.elements.end_time.value = end;
      findFlows();
    });
    message.append(" The nodes hold captures from ", shortTime(start), " to ", shortTime(end), " UTC. ", use);
  }

  // ------------------------------------------------------------ wiring

  form.addEventListener("submit", (event) => { event.preventDefault(); findFlows(); });
  for (const button of document.querySelectorAll("[data-last]")) {
    button.addEventListener("click", () => {
      form.elements.start_time.value = "-" + button.dataset.last;
      form.elements.end_time.value = "now";
      findFlows();
    });
  }
  for (const th of document.querySelectorAll("#flows th[data-key]")) {
    th.querySelector("button").addEventListener("click", () => {
      const key = th.dataset.key;
      state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : (key === "bytes" || key === "packets" ? -1 : 1) };
      renderTable();
      th.querySelector("button").focus();
    });
  }
  $("#select-all").addEventListener("change", (event) => {
    state.selected = event.target.checked ? new Set(state.flows.map((f) => f._id)) : new Set();
    renderTable();
  });
  $("#download-selection").addEventListener("click", () => {
    downloadFlows(state.flows.filter((f) => state.selected.has(f._id)));
  });
  for (const radio of document.querySelectorAll("input[name=format]")) {
    radio.addEventListener("change", () => { if (state.window) $("#cli").textContent = cliLine(windowParams(state.asked)); });
  }
  window.addEventListener("resize", drawTimeline);
  document.addEventListener("keydown", (event) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
    if (event.key === "/" && !typing) { event.preventDefault(); form.elements.src_addr.focus(); }
    if (event.key === "Escape") clearError();
  });

  // A query in the address (a bookmark, a shared link) fills the form and is asked at once.
  const given = new URLSearchParams(location.search);
  for (const name of QUERY) if (given.has(name)) form.elements[name].value = given.get(name);
  loadHoldings();
  if (given.has("start_time")) findFlows();
  else form.elements.start_time.focus();
})();
