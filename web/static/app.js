// Upload page: choose or drop a file, upload with progress, show the verdict, timeline and faces.
"use strict";
const form = document.getElementById("upload-form");
const input = document.getElementById("file-input");
const zone = document.getElementById("drop-zone");
const submit = document.getElementById("submit");
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
let chosen = null;

function choose(file) {
  chosen = file || null;
  document.getElementById("drop-text").textContent = chosen ? chosen.name : "Drop a video or image here, or choose a file";
  submit.disabled = !chosen;
}
input.addEventListener("change", () => choose(input.files[0]));
zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragging"); });
zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("dragging"); choose(e.dataTransfer.files[0]); });

function show(id, visible) { document.getElementById(id).hidden = !visible; }
function text(id, value) { document.getElementById(id).textContent = value; }

form.addEventListener("submit", (e) => {
  e.preventDefault();
  if (!chosen) return;
  const body = new FormData();
  body.append("file", chosen);
  const request = new XMLHttpRequest();
  request.open("POST", "/api/v1/classify?thumbnails=true");
  request.upload.onprogress = (event) => {
    if (event.lengthComputable) {
      const percent = Math.round(100 * event.loaded / event.total);
      document.getElementById("progress").value = percent;
      text("progress-text", percent < 100 ? `uploading ${percent}%` : "analysing…");
    }
  };
  request.onload = () => {
    show("progress-box", false);
    submit.disabled = false;
    let data = null;
    try { data = JSON.parse(request.responseText); } catch (err) { data = null; }
    if (request.status !== 200 || !data) {
      const message = data && data.error ? data.error.message : `the server answered ${request.status}`;
      text("error", message);
      show("error", true);
      return;
    }
    render(data);
  };
  request.onerror = () => { show("progress-box", false); submit.disabled = false; text("error", "the upload failed (network error)"); show("error", true); };
  show("error", false); show("result", false); show("progress-box", true);
  text("progress-text", "uploading…");
  submit.disabled = true;
  request.send(body);
});

function render(data) {
  const badge = document.getElementById("verdict");
  badge.textContent = data.verdict;
  badge.className = "badge " + data.verdict;
  const warnings = Array.isArray(data.warnings) ? data.warnings : [];  // damaged file, low evidence, ...
  document.getElementById("warnings").replaceChildren(...warnings.map((warning) => {
    const item = document.createElement("li");
    item.textContent = warning;
    return item;
  }));
  show("warnings", warnings.length > 0);
  text("p-fake", data.p_fake === null ? "no face found" : `p_fake = ${data.p_fake.toFixed(3)} (threshold ${data.threshold.toFixed(3)})`);
  const counted = data.tracks.filter((t) => t.counted).length;
  text("explain", data.p_fake === null
    ? `No face was found in the ${data.n_frames} sampled frame(s), so there is nothing to judge.`
    : `${data.n_faces} face(s) in ${data.n_frames} sampled frame(s), ${counted} person track(s) counted. ${decidedLine(data)}`);
  const rows = document.querySelector("#per-model tbody");
  rows.replaceChildren(...Object.entries(data.per_model).map(([name, p]) => {
    const row = document.createElement("tr");
    row.innerHTML = `<td></td><td>${p === null ? "–" : p.toFixed(3)}</td>`;
    row.firstChild.textContent = name;
    return row;
  }));
  drawTimeline(data);
  const faces = document.getElementById("faces");
  faces.replaceChildren(...data.faces.map((face, i) => {
    const box = document.createElement("div");
    box.className = "face";
    const img = document.createElement("img");
    img.src = (data.thumbnails || [])[i] || "";
    img.alt = `face ${i}`;
    const caption = document.createElement("div");
    caption.textContent = `t=${face.timestamp.toFixed(1)}s #${face.track}: ${face.p_fake.toFixed(2)}`;
    box.append(img, caption);
    return box;
  }));
  show("result", true);
}

// One short line: which person decided, and which faces were left out and why (e.g. a photo on the wall).
function decidedLine(data) {
  if (data.p_fake === null || !Array.isArray(data.tracks)) return "";
  const decider = data.tracks.find((t) => t.track === data.deciding_track);
  const left = data.tracks.filter((t) => t.excluded).map((t) => `#${t.track} ${t.excluded}`);
  const head = decider
    ? `Decided by person #${decider.track} (p_fake ${decider.p_fake.toFixed(2)}, ${decider.n_faces} faces).`
    : "Decided by the voting persons together.";
  return left.length ? `${head} Not counted: ${left.join(", ")}.` : head;
}

function drawTimeline(data) {
  const width = 760, height = 220, pad = 36;
  const times = data.faces.map((f) => f.timestamp);
  const tMax = Math.max(1e-6, ...times);
  const x = (t) => pad + (width - 2 * pad) * (t / tMax);
  const y = (p) => height - pad - (height - 2 * pad) * p;
  let svg = `<svg width="${width}" height="${height}" role="img" aria-label="p_fake per frame">`;
  svg += `<line x1="${pad}" x2="${width - pad}" y1="${y(data.threshold)}" y2="${y(data.threshold)}" stroke="#888" stroke-dasharray="4 3"/>`;
  svg += `<text x="4" y="${y(1) + 4}" font-size="11">1</text><text x="4" y="${y(0) + 4}" font-size="11">0</text>`;
  for (const track of data.tracks) {
    const points = data.faces.filter((f) => f.track === track.track).map((f) => `${x(f.timestamp)},${y(f.p_fake)}`);
    const color = COLORS[track.track % COLORS.length];
    const width = track.track === data.deciding_track ? 4 : 2;  // the deciding person's line is thicker
    const stroke = track.counted ? color : "#bbb";  // excluded tracks (short, static, small) are greyed
    svg += `<polyline fill="none" stroke="${stroke}" stroke-width="${width}" ${track.counted ? "" : 'stroke-dasharray="2 3"'} points="${points.join(" ")}"/>`;
    for (const point of points) { const [px, py] = point.split(","); svg += `<circle cx="${px}" cy="${py}" r="3" fill="${stroke}"/>`; }
  }
  svg += `<text x="${width - pad}" y="${height - 8}" font-size="11" text-anchor="end">time (s), ${tMax.toFixed(1)}</text></svg>`;
  document.getElementById("timeline").innerHTML = svg;
}
