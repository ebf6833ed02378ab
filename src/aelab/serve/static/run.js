// A run's page: loss curves that grow epoch by epoch, a reconstruction row, and the controls.
// Progress arrives by server-sent events; closing the tab stops nothing on the server.
import { drawCurves } from "/static/chart.js";

const root = document.querySelector(".run-page");
const rel = root.dataset.run;
const base = "/train/run/" + rel.split("/").map(encodeURIComponent).join("/");
const $ = (id) => document.getElementById(id);
const LIVE = new Set(["starting", "training", "finishing", "pausing", "stopping", "running"]);

let history = {};
let epochs = 0;
let state = "";

function setState(s, message) {
  state = s;
  const badge = $("run-state");
  badge.textContent = s;
  const cls = LIVE.has(s) ? "running" : (s === "paused" || s === "stopped" ? "interrupted" : s);
  badge.className = "status " + cls;
  const live = LIVE.has(s);
  const resumable = s === "paused" || s === "stopped" || s === "interrupted";
  $("btn-pause").disabled = !(s === "training");
  $("btn-stop").disabled = !(live && s !== "stopping" && s !== "finishing");
  $("btn-resume").disabled = !resumable;
  $("btn-step").disabled = !(resumable || s === "training");
  $("link-draw").classList.toggle("hidden", s !== "finished");
  $("link-explore").classList.toggle("hidden", s !== "finished");
  if (message !== undefined) say(message, s === "failed" || s === "damaged");
}

function say(text, error) {
  const m = $("message");
  m.textContent = text || "";
  m.classList.toggle("hidden", !text);
  m.className = "message " + (error ? "error" : "info") + (text ? "" : " hidden");
}

function setEpoch(e, of) {
  if (of) epochs = of;
  $("epoch-text").textContent = `epoch ${e} of ${epochs}`;
  $("bar").style.width = epochs ? `${(100 * e) / epochs}%` : "0";
}

function redraw() {
  drawCurves($("charts"), history, epochs);
}

function drawRecon(r) {
  const [c, h, w] = r.shape;
  const n = r.n;
  const scale = Math.max(2, Math.floor(84 / h));  // about 84 px an image: readable on a projector
  const box = $("recon");
  let cv = box.querySelector("canvas");
  if (!cv) {
    box.innerHTML = "";
    cv = document.createElement("canvas");
    cv.id = "recon-canvas";
    box.appendChild(cv);
  }
  cv.width = n * (w + 2) * scale;
  cv.height = 2 * (h + 2) * scale;
  const ctx = cv.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, cv.width, cv.height);
  const rows = [atob(r.orig), atob(r.recon)];
  const img = ctx.createImageData(w, h);
  const tmp = document.createElement("canvas");
  tmp.width = w; tmp.height = h;
  const tctx = tmp.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  rows.forEach((bytes, row) => {
    for (let k = 0; k < n; k++) {
      const off = k * c * h * w;
      for (let p = 0; p < h * w; p++) {
        const g = [0, 1, 2].map((ch) => bytes.charCodeAt(off + (c === 3 ? ch * h * w : 0) + p));
        // dark ink on white, as the report draws them
        img.data[4 * p] = 255 - g[0]; img.data[4 * p + 1] = 255 - g[1]; img.data[4 * p + 2] = 255 - g[2];
        img.data[4 * p + 3] = 255;
      }
      tctx.putImageData(img, 0, 0);
      ctx.drawImage(tmp, (k * (w + 2) + 1) * scale, (row * (h + 2) + 1) * scale, w * scale, h * scale);
    }
  });
  $("recon-note").textContent = `after epoch ${r.epoch} · top: test images · bottom: the model's reconstructions`;
}

// Matplotlib's tab10, as aelab latent's map.png and the Explore page colour the classes
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
let frame = null;  // the map's axes: one frame per run that only grows, so what moves is the codes

function drawCodes(c) {
  const cv = $("codes-canvas");
  const xy = c.xy;
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (let i = 0; i < xy.length; i += 2) {
    x0 = Math.min(x0, xy[i]); x1 = Math.max(x1, xy[i]);
    y0 = Math.min(y0, xy[i + 1]); y1 = Math.max(y1, xy[i + 1]);
  }
  const pad = (a, b) => Math.max(1e-6, (b - a) * 0.08);
  if (!frame || x0 < frame[0] || x1 > frame[1] || y0 < frame[2] || y1 > frame[3]) {
    const [px, py] = [pad(x0, x1), pad(y0, y1)];
    frame = frame ? [Math.min(frame[0], x0 - px), Math.max(frame[1], x1 + px), Math.min(frame[2], y0 - py),
                     Math.max(frame[3], y1 + py)]
                  : [x0 - px, x1 + px, y0 - py, y1 + py];
  }
  const dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth || 480, h = cv.clientHeight || 360;
  cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr);
  const ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = "#d5dbe1"; ctx.lineWidth = 1;
  const sx = (v) => 8 + ((v - frame[0]) / (frame[1] - frame[0])) * (w - 16);
  const sy = (v) => h - 8 - ((v - frame[2]) / (frame[3] - frame[2])) * (h - 16);
  if (frame[0] < 0 && frame[1] > 0) { ctx.beginPath(); ctx.moveTo(sx(0), 0); ctx.lineTo(sx(0), h); ctx.stroke(); }
  if (frame[2] < 0 && frame[3] > 0) { ctx.beginPath(); ctx.moveTo(0, sy(0)); ctx.lineTo(w, sy(0)); ctx.stroke(); }
  const r = Math.max(2.5, Math.min(5, w / 130));
  for (let i = 0; i < xy.length / 2; i++) {
    const lab = c.labels ? c.labels[i] : 0;
    ctx.fillStyle = COLOURS[((lab % 10) + 10) % 10];
    ctx.globalAlpha = 0.8;
    ctx.beginPath(); ctx.arc(sx(xy[2 * i]), sy(xy[2 * i + 1]), r, 0, 2 * Math.PI); ctx.fill();
  }
  ctx.globalAlpha = 1;
  const how = c.method === "code" ? `the ${c.dims}-D code itself` : `PCA plane of the ${c.dims}-D code`;
  $("codes-note").textContent = `after epoch ${c.epoch} · ${c.n} test ${c.labels ? "samples, coloured by label" : "samples"} · ${how}`;
  const legend = $("codes-legend");
  if (c.labels && !legend.childElementCount) {
    const seen = [...new Set(c.labels)].sort((a, b) => a - b).slice(0, 10);
    for (const lab of seen) {
      const span = document.createElement("span");
      span.style.setProperty("--c", COLOURS[((lab % 10) + 10) % 10]);
      span.textContent = c.classes ? c.classes[lab] : String(lab);
      legend.appendChild(span);
    }
  }
  $("codes-empty").classList.add("hidden");
  cv.classList.remove("hidden");
  cv.dataset.epoch = String(c.epoch);
}

function showFinalPng(src) {
  if (!src) return;
  const box = $("recon");
  box.innerHTML = "";
  const img = document.createElement("img");
  img.id = "recon-png";
  img.alt = "test images (top) and their reconstructions (bottom)";
  img.src = src + "?t=" + Date.now();
  box.appendChild(img);
  $("recon-note").textContent = "the finished run's recon.png · top: test images · bottom: reconstructions";
}

const es = new EventSource(base + "/events");
es.addEventListener("snapshot", (ev) => {
  const s = JSON.parse(ev.data);
  history = s.history || {};
  if (s.family && s.family !== "?") $("run-what").textContent = `${s.family} on ${s.data}`;
  setEpoch(s.epoch, s.epochs);
  setState(s.state, s.message);
  redraw();
  if (s.recon) drawRecon(s.recon);
  if (s.codes) drawCodes(s.codes);
  // a page opened after the run finished: its recon.png in place of the last epoch's row
  if (s.state === "finished" && s.recon_png) showFinalPng(s.recon_png);
});
es.addEventListener("history", (ev) => {
  history = JSON.parse(ev.data).history || {};
  redraw();
});
es.addEventListener("epoch", (ev) => {
  const e = JSON.parse(ev.data);
  for (const [k, v] of Object.entries(e.train)) (history[k] ||= []).push(v);
  for (const [k, v] of Object.entries(e.val)) (history["val_" + k] ||= []).push(v);
  setEpoch(e.epoch, e.epochs);
  redraw();
});
es.addEventListener("recon", (ev) => drawRecon(JSON.parse(ev.data)));
es.addEventListener("codes", (ev) => drawCodes(JSON.parse(ev.data)));
es.addEventListener("state", (ev) => {
  const s = JSON.parse(ev.data);
  if (s.state === "server-stopped") { es.close(); setState("stopped", s.message); return; }
  setState(s.state, s.message);
});
es.addEventListener("finish-step", (ev) => {
  const f = JSON.parse(ev.data);
  say(`finishing: ${f.step} (${f.done} of ${f.of})`);
});
es.addEventListener("final", (ev) => showFinalPng(JSON.parse(ev.data).recon_png));

async function act(what) {
  for (const b of document.querySelectorAll(".controls button")) b.disabled = true;
  let r;
  try {
    r = await fetch(`${base}/${what}`, { method: "POST" });
  } catch (err) {
    say(`the server did not answer (${err})`, true);
    return;
  }
  const body = await r.json();
  if (!body.ok) { say(body.message, true); setState(state); }
}
$("btn-pause").addEventListener("click", () => act("pause"));
$("btn-step").addEventListener("click", () => act("step"));
$("btn-resume").addEventListener("click", () => act("resume"));
$("btn-stop").addEventListener("click", () => act("stop"));
