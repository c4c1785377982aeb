// Upload page: the server's limits, then choose or drop a file, upload with progress, and show the verdict in
// words, the timeline of each person, the faces, the per-net scores and the downloads.
"use strict";
const form = document.getElementById("upload-form");
const input = document.getElementById("file-input");
const zone = document.getElementById("drop-zone");
const submit = document.getElementById("submit");
// One colour per counted person, in person order, as in the report PNG (ensembles/report.py); persons not
// counted are grey, each with its own marker shape.
const COLORS = ["#1f77b4", "#ff7f0e", "#9467bd", "#17becf", "#bcbd22", "#e377c2", "#8c564b"];
const GREY = "#8a949e";
const SHAPES = ["square", "diamond", "triangle"];
const LOW_CONFIDENCE_WORDS = "low-confidence detection (may not be a face)";
const SVG_NS = "http://www.w3.org/2000/svg";
let chosen = null;
let maxUploadBytes = null;
let jsonUrl = null;

function show(id, visible) { document.getElementById(id).hidden = !visible; }
function text(id, value) { document.getElementById(id).textContent = value; }
function element(tag, attributes = {}, content = "") {
  const node = document.createElement(tag);
  Object.entries(attributes).forEach(([key, value]) => node.setAttribute(key, value));
  node.textContent = content;
  return node;
}
function showError(message) { text("error", message); show("error", true); }

// -- what the server accepts ------------------------------------------------------------------------------
fetch("/api/v1/limits").then((r) => r.json()).then((limits) => {
  maxUploadBytes = limits.max_upload_mb * 2 ** 20;
  text("max-upload", limits.max_upload_mb);
  text("formats", `: videos ${limits.video_formats.join(" ")}; images ${limits.image_formats.join(" ")}`);
  text("sampling", limits.sampling);
  if (limits.test_accuracy !== null && limits.test_accuracy !== undefined) {
    text("accuracy", `; on held-out test faces they were right ${Math.round(100 * limits.test_accuracy)}% of the time`
      + (limits.test_roc_auc ? ` (ROC-AUC ${limits.test_roc_auc.toFixed(2)})` : ""));
  }
  show("model-card-line", Boolean(limits.model_card));
  show("footer-card", Boolean(limits.model_card));
}).catch(() => text("max-upload", "(unknown)"));

function choose(file) {
  chosen = file || null;
  document.getElementById("drop-text").textContent = chosen ? chosen.name : "Drop a video or image here, or choose a file";
  submit.disabled = !chosen;
  show("error", false);
  if (chosen && maxUploadBytes !== null && chosen.size > maxUploadBytes) {
    showError(`${chosen.name} is ${(chosen.size / 2 ** 20).toFixed(0)} MB, over this server's ${maxUploadBytes / 2 ** 20} MB limit`);
    submit.disabled = true;
  }
}
input.addEventListener("change", () => choose(input.files[0]));
zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragging"); });
zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("dragging"); choose(e.dataTransfer.files[0]); });

form.addEventListener("submit", (e) => {
  e.preventDefault();
  if (!chosen) return;
  const body = new FormData();
  body.append("file", chosen);
  const request = new XMLHttpRequest();
  request.open("POST", "/api/v1/classify?thumbnails=true&report=true");
  request.upload.onprogress = (event) => {
    if (event.lengthComputable) {
      const percent = Math.round(100 * event.loaded / event.total);
      document.getElementById("progress").value = percent;
      text("progress-text", percent < 100 ? `uploading ${percent}%` : "analysing… (about 3–5 s per 10 s of video)");
    }
  };
  request.onload = () => {
    show("progress-box", false);
    submit.disabled = false;
    let data = null;
    try { data = JSON.parse(request.responseText); } catch (err) { data = null; }
    if (request.status !== 200 || !data) {
      showError(data && data.error ? data.error.message : `the server answered ${request.status}`);
      return;
    }
    render(data);
  };
  request.onerror = () => { show("progress-box", false); submit.disabled = false; showError("the upload failed (network error)"); };
  show("error", false); show("result", false); show("progress-box", true);
  text("progress-text", "uploading…");
  submit.disabled = true;
  request.send(body);
});

// -- the result ---------------------------------------------------------------------------------------------
function render(data) {
  const scored = data.p_fake !== null;  // NO_FACE: no score, one message instead of empty sections
  const badge = document.getElementById("verdict");
  badge.textContent = data.verdict;
  badge.className = "badge " + data.verdict;
  text("band", data.band || "");
  text("p-fake", scored ? `p_fake ${data.p_fake.toFixed(2)} · threshold ${data.threshold.toFixed(2)}` : "");
  const kind = data.media_type === "image" ? "image" : [durationWords(data.duration), "video"].filter(Boolean).join(" ");
  text("file-line", `${data.file_name || data.path} · ${kind}`);
  const warnings = Array.isArray(data.warnings) ? data.warnings : [];  // damaged file, low evidence, ...
  document.getElementById("warnings").replaceChildren(...warnings.map((warning) => element("li", {}, warning)));
  show("warnings", warnings.length > 0);
  text("explain", data.explanation);
  document.getElementById("explain").className = scored ? "explanation" : "explanation notice";
  const seconds = data.timings && data.timings.total !== undefined ? ` Analysed in ${data.timings.total.toFixed(1)} s.` : "";
  text("evidence", scored ? `Evidence: ${data.evidence}.${seconds}` : "");
  show("evidence", scored);
  setDownloads(data);
  const styles = trackStyles(data);
  show("timeline-section", scored && data.media_type !== "image");
  show("faces-section", scored);
  show("per-model-section", scored);
  if (scored) {
    drawTimeline(data, styles);
    drawLegend(data, styles);
    drawFaces(data, styles);
    drawPerModel(data);
  }
  show("result", true);
}

function durationWords(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)} min ${(seconds % 60).toFixed(1).padStart(4, "0")} s`;
}

function setDownloads(data) {
  const stem = (data.video_id || "verdict").replace(/[^\w.~-]+/g, "_");
  const { thumbnails, report_png, ...verdict } = data;  // the JSON without the bulky images
  if (jsonUrl) URL.revokeObjectURL(jsonUrl);
  jsonUrl = URL.createObjectURL(new Blob([JSON.stringify(verdict, null, 2)], { type: "application/json" }));
  const json = document.getElementById("download-json");
  json.href = jsonUrl;
  json.download = `${stem}.verdict.json`;
  const report = document.getElementById("download-report");
  report.hidden = !report_png;
  if (report_png) { report.href = report_png; report.download = `${stem}.report.png`; }
}

// Per track: colour, marker and line, like the report: counted persons in colour (the decider thick),
// persons not counted grey and dotted, each with its own marker shape.
function trackStyles(data) {
  const order = [...data.tracks].sort((a, b) => personNumber(a) - personNumber(b) || a.track - b.track);
  const styles = {};
  let colour = 0, shape = 0;
  for (const track of order) {
    const deciding = track.track === data.deciding_track;
    styles[track.track] = !track.counted && !deciding
      ? { color: GREY, shape: SHAPES[shape++ % SHAPES.length], width: 1.5, dash: "2 3", deciding, counted: false }
      : { color: COLORS[colour++ % COLORS.length], shape: "circle", width: deciding ? 3.5 : 1.8, dash: "", deciding, counted: true };
  }
  return styles;
}
function personNumber(track) {
  const match = /(\d+)$/.exec(track.label || "");
  return match ? Number(match[1]) : 1e6;
}
function personName(data, trackId) {
  const track = data.tracks.find((t) => t.track === trackId);
  return track && track.label ? track.label : `track ${trackId}`;
}

function svgNode(tag, attributes = {}, content = "") {
  const node = document.createElementNS(SVG_NS, tag);
  Object.entries(attributes).forEach(([key, value]) => node.setAttribute(key, value));
  if (content) node.textContent = content;
  return node;
}

// A marker: filled in the person's colour, or hollow for a low-confidence detection.
function marker(shape, cx, cy, color, hollow, size = 4) {
  const paint = { fill: hollow ? "#fff" : color, stroke: color, "stroke-width": hollow ? 1.6 : 1 };
  if (shape === "square") return svgNode("rect", { x: cx - size, y: cy - size, width: 2 * size, height: 2 * size, ...paint });
  if (shape === "diamond") return svgNode("polygon", { points: `${cx},${cy - size - 1} ${cx + size + 1},${cy} ${cx},${cy + size + 1} ${cx - size - 1},${cy}`, ...paint });
  if (shape === "triangle") return svgNode("polygon", { points: `${cx},${cy - size - 1} ${cx + size + 1},${cy + size} ${cx - size - 1},${cy + size}`, ...paint });
  return svgNode("circle", { cx, cy, r: size, ...paint });
}

// A round step giving at most about 10 ticks over `span` seconds.
function tickStep(span) {
  const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600];
  return steps.find((step) => span / step <= 10) || 3600 * Math.ceil(span / 36000);
}

function drawTimeline(data, styles) {
  const width = 800, height = 250, left = 46, right = 56, top = 14, bottom = 38;
  const times = data.faces.map((f) => f.timestamp);
  const span = Math.max(data.duration || 0, ...times, 0.1);
  const x = (t) => left + (width - left - right) * (t / span);
  const y = (p) => top + (height - top - bottom) * (1 - p);
  const svg = svgNode("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "p_fake of each person's face over time" });
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {  // p_fake axis
    svg.append(svgNode("line", { x1: left, x2: width - right, y1: y(p), y2: y(p), stroke: "#eef1f4" }));
    svg.append(svgNode("text", { x: left - 6, y: y(p) + 4, "text-anchor": "end", class: "tick" }, String(p)));
  }
  const middle = y(0.5);
  svg.append(svgNode("text", { x: 12, y: middle, "text-anchor": "middle", class: "axis-title", transform: `rotate(-90 12 ${middle})` }, "p_fake"));
  const step = tickStep(span);
  for (let t = 0; t <= span + 1e-9; t += step) {  // time axis, in seconds
    svg.append(svgNode("line", { x1: x(t), x2: x(t), y1: y(0), y2: y(0) + 5, stroke: "#6b7785" }));
    svg.append(svgNode("text", { x: x(t), y: y(0) + 17, "text-anchor": "middle", class: "tick" },
      `${Number(t.toFixed(1))} s`));
  }
  svg.append(svgNode("line", { x1: left, x2: width - right, y1: y(0), y2: y(0), stroke: "#6b7785" }));
  svg.append(svgNode("text", { x: width - right, y: height - 4, "text-anchor": "end", class: "axis-title" }, "time in the clip"));
  const th = y(data.threshold);  // the threshold, labelled where the line leaves room
  svg.append(svgNode("line", { x1: left, x2: width - right, y1: th, y2: th, stroke: "#b3261e", "stroke-dasharray": "6 4", "stroke-width": 1.3 }));
  svg.append(svgNode("text", { x: width - right - 4, y: data.threshold > 0.85 ? th + 14 : th - 5, "text-anchor": "end", class: "threshold-label" },
    `threshold ${data.threshold.toFixed(2)}: above it FAKE`));
  const order = [...data.tracks].sort((a, b) => styles[a.track].deciding - styles[b.track].deciding);  // the decider on top
  for (const track of order) {
    const style = styles[track.track];
    if (style.counted) {  // the person's score over the clip, the one compared with the threshold, at the right
      const edge = width - right + 4, py = y(track.p_fake);
      svg.append(svgNode("polygon", { points: `${edge},${py} ${edge + 8},${py - 5} ${edge + 8},${py + 5}`, fill: style.color, class: "person-score" }));
      svg.append(svgNode("text", { x: edge + 11, y: py + 4, class: "tick", fill: style.color }, track.p_fake.toFixed(2)));
    }
    const faces = data.faces.filter((f) => f.track === track.track);
    svg.append(svgNode("polyline", { fill: "none", stroke: style.color, "stroke-width": style.width,
      "stroke-dasharray": style.dash, points: faces.map((f) => `${x(f.timestamp)},${y(f.p_fake)}`).join(" "),
      class: style.deciding ? "track decided" : "track" }));
    for (const face of faces) {
      const dot = marker(style.shape, x(face.timestamp), y(face.p_fake), style.color, face.low_confidence, style.deciding ? 4.5 : 3.5);
      dot.append(svgNode("title", {}, `${personName(data, face.track)} · ${face.timestamp.toFixed(1)} s · p_fake ${face.p_fake.toFixed(2)}`
        + (face.low_confidence ? ` · ${LOW_CONFIDENCE_WORDS}` : "")));
      dot.setAttribute("class", face.low_confidence ? "face-marker low-confidence" : "face-marker");
      svg.append(dot);
    }
  }
  document.getElementById("timeline").replaceChildren(svg);
}

// One entry per person (its description: share of frames, score, decided or why not counted), the threshold,
// and the hollow marker when any detection is low-confidence.
function drawLegend(data, styles) {
  const swatch = (draw) => {
    const svg = svgNode("svg", { width: 34, height: 14, class: "swatch" });
    draw(svg);
    return svg;
  };
  const entry = (svg, words, className = "") => {
    const item = element("li", className ? { class: className } : {});
    item.append(svg, element("span", {}, words));
    return item;
  };
  const order = [...data.tracks].sort((a, b) => personNumber(a) - personNumber(b) || a.track - b.track);
  const items = order.map((track) => {
    const style = styles[track.track];
    return entry(swatch((svg) => {
      svg.append(svgNode("line", { x1: 2, x2: 32, y1: 7, y2: 7, stroke: style.color, "stroke-width": style.width, "stroke-dasharray": style.dash }));
      svg.append(marker(style.shape, 17, 7, style.color, false, 3.5));
    }), track.description, style.deciding ? "decided" : (style.counted ? "" : "not-counted"));
  });
  items.push(entry(swatch((svg) => svg.append(svgNode("polygon", { points: "13,7 21,2 21,12", fill: "#4a5561" }))),
    "right edge: a counted person's score over the whole clip, the one compared with the threshold"));
  items.push(entry(swatch((svg) => svg.append(svgNode("line", { x1: 2, x2: 32, y1: 7, y2: 7, stroke: "#b3261e", "stroke-dasharray": "6 4", "stroke-width": 1.3 }))),
    `threshold ${data.threshold.toFixed(2)}: a person scoring above it makes the verdict FAKE`));
  if (data.faces.some((f) => f.low_confidence)) {
    items.push(entry(swatch((svg) => svg.append(marker("circle", 17, 7, "#4a5561", true, 4))), LOW_CONFIDENCE_WORDS, "low-confidence"));
  }
  document.getElementById("legend").replaceChildren(...items);
}

function drawFaces(data, styles) {
  const image = data.media_type === "image";
  document.getElementById("faces").replaceChildren(...data.faces.map((face, i) => {
    const style = styles[face.track] || { color: GREY, deciding: false, counted: false };
    const box = element("figure", { class: "face" + (style.deciding ? " decided" : "") + (style.counted ? "" : " not-counted") });
    box.style.borderColor = style.color;
    const name = personName(data, face.track);
    const img = element("img", { src: (data.thumbnails || [])[i] || "", alt: `${name}, ${face.timestamp.toFixed(1)} s` });
    const caption = element("figcaption");
    caption.append(element("div", { class: "who" }, name),
      element("div", {}, [...(image ? [] : [`${face.timestamp.toFixed(1)} s`]), face.p_fake.toFixed(2)].join(" · ")));
    box.append(img, caption);
    if (face.low_confidence) box.append(element("div", { class: "low-confidence" }, "low-confidence detection"));
    box.title = `${name} at ${face.timestamp.toFixed(1)} s: p_fake ${face.p_fake.toFixed(2)}`
      + (face.detector_score !== null && face.detector_score !== undefined ? `, detector score ${face.detector_score.toFixed(2)}` : "");
    return box;
  }));
}

function drawPerModel(data) {
  document.querySelector("#per-model tbody").replaceChildren(...Object.entries(data.per_model).map(([name, p]) => {
    const row = element("tr");
    const score = element("td", {}, p === null ? "abstained" : p.toFixed(3));
    if (p === null) {
      score.className = "abstained";
      score.append(element("span", { class: "note" }, " (no person was seen in enough frames of a video to judge)"));
    }
    row.append(element("td", {}, name), score);
    return row;
  }));
}
