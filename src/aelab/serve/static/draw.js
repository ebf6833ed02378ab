// aelab lab: the Draw page. The strokes go to the server (/api/lab/draw), which prepares them as
// MNIST's digits were made and answers each chosen model's reconstruction and code. At most one
// request is in flight; while it is, the newest drawing waits and is sent when it returns.
// The helpers at the top are shared with explore.js (it imports them).

export function bytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function floats(b64) { return new Float32Array(bytes(b64).buffer); }
export function ints(b64) { return new Int32Array(bytes(b64).buffer); }

// Paint one image (uint8, C×H×W planes; C = 1 or 3) on a canvas of its own size.
export function paint(canvas, data, c, h, w, offset = 0) {
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  const n = h * w;
  for (let i = 0; i < n; i++) {
    const r = data[offset + i];
    img.data[4 * i] = r;
    img.data[4 * i + 1] = c === 3 ? data[offset + n + i] : r;
    img.data[4 * i + 2] = c === 3 ? data[offset + 2 * n + i] : r;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

// {shape: [N, C, H, W], data: base64} -> a list of canvases (class "pix").
export function imageCanvases(images, cls = "pix") {
  const [n, c, h, w] = images.shape;
  const data = bytes(images.data);
  const out = [];
  for (let i = 0; i < n; i++) {
    const cv = document.createElement("canvas");
    cv.className = cls;
    paint(cv, data, c, h, w, i * c * h * w);
    out.push(cv);
  }
  return out;
}

// POST (or GET) JSON; a non-2xx answer throws its one-line message.
export async function api(url, body) {
  const opts = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify(body)};
  const r = await fetch(url, opts);
  let j = null;
  try { j = await r.json(); } catch (e) { j = null; }
  if (!r.ok) throw new Error((j && j.error) || `${url}: HTTP ${r.status}`);
  return j;
}

export function showError(el, err) {
  if (!el) return;
  if (err) { el.textContent = String(err.message || err); el.hidden = false; } else { el.hidden = true; }
}

// A run's label in a <select>: its name, family, data and final validation loss.
export function runLabel(r) {
  const loss = r.val_loss == null ? "" : `, val loss ${Number(r.val_loss).toFixed(4)}`;
  return `${r.name} — ${r.family}${r.noise > 0 ? " (denoiser)" : ""}, ${r.data}${loss}`;
}

// Code bars: one bar per unit; for a VAE μ as the bar and ±σ as a whisker.
function drawBars(canvas, values, sigma) {
  const dpr = window.devicePixelRatio || 1;
  const W = Math.max(50, Math.round(canvas.clientWidth * dpr)), H = Math.max(40, Math.round(canvas.clientHeight * dpr));
  canvas.width = W; canvas.height = H;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, W, H);
  if (!values || !values.length) return;
  const n = values.length;
  let lo = 0, hi = 0;
  for (let i = 0; i < n; i++) {
    const s = sigma ? sigma[i] : 0;
    lo = Math.min(lo, values[i] - s); hi = Math.max(hi, values[i] + s);
  }
  if (hi - lo < 1e-6) hi = lo + 1;
  const pad = 6 * dpr, left = 44 * dpr, y = v => pad + (H - 2 * pad) * (hi - v) / (hi - lo);
  const bw = (W - left - pad) / n;
  ctx.strokeStyle = "#4a5563"; ctx.lineWidth = dpr;
  ctx.beginPath(); ctx.moveTo(left, y(0)); ctx.lineTo(W - pad, y(0)); ctx.stroke();
  for (let i = 0; i < n; i++) {
    const x = left + i * bw, v = values[i];
    ctx.fillStyle = v >= 0 ? "#1f5fbf" : "#b3261e";
    ctx.fillRect(x + bw * 0.1, Math.min(y(0), y(v)), Math.max(1, bw * 0.8), Math.max(1, Math.abs(y(v) - y(0))));
    if (sigma) {
      ctx.strokeStyle = "#111"; ctx.lineWidth = Math.max(1, dpr * 1.5);
      ctx.beginPath();
      ctx.moveTo(x + bw / 2, y(v - sigma[i])); ctx.lineTo(x + bw / 2, y(v + sigma[i]));
      ctx.stroke();
    }
  }
  // the scale: top, zero and bottom, right-aligned left of the bars
  ctx.fillStyle = "#1b1f24"; ctx.font = `${14 * dpr}px system-ui, sans-serif`; ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const ticks = [[hi, y(hi)], [lo, y(lo)]];
  if (Math.abs(y(0) - y(hi)) > 14 * dpr && Math.abs(y(0) - y(lo)) > 14 * dpr) ticks.push([0, y(0)]);
  for (const [v, py] of ticks) ctx.fillText(v === 0 ? "0" : v.toFixed(2), left - 6 * dpr, Math.min(H - 7 * dpr, Math.max(7 * dpr, py)));
}

function initDraw(root) {
  const pad = document.getElementById("pad");
  const err = document.getElementById("draw-error");
  const inputCv = document.getElementById("input");
  const noisyCv = document.getElementById("noisy");
  const noise = document.getElementById("noise");
  const panels = [...root.querySelectorAll(".model")];
  const params = new URLSearchParams(location.search);
  const st = {strokes: [], down: false, gen: 0, sentGen: 0, paintedGen: 0, inflight: false, seed: 0, runs: [],
              timings: []};
  // the page's state, for tests and the benchmark (read-only use)
  window.aelabDraw = st;

  const ctx = pad.getContext("2d");
  function redrawPad() {
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.strokeStyle = "#fff"; ctx.fillStyle = "#fff"; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.lineWidth = penWidth();
    for (const s of st.strokes) {
      ctx.beginPath();
      ctx.moveTo(s[0][0], s[0][1]);
      if (s.length === 1) { ctx.arc(s[0][0], s[0][1], penWidth() / 2, 0, 2 * Math.PI); ctx.fill(); continue; }
      for (const p of s) ctx.lineTo(p[0], p[1]);
      ctx.stroke();
    }
  }
  const penWidth = () => Math.round(pad.width * 0.07);
  function at(e) {
    const r = pad.getBoundingClientRect();
    return [Math.round((e.clientX - r.left) * pad.width / r.width * 10) / 10,
            Math.round((e.clientY - r.top) * pad.height / r.height * 10) / 10];
  }
  function changed() { st.gen++; schedule(); }
  pad.addEventListener("pointerdown", e => {
    e.preventDefault();
    try { pad.setPointerCapture(e.pointerId); } catch (x) { /* synthetic pointer */ }
    st.down = true; st.strokes.push([at(e)]); redrawPad(); changed();
  });
  pad.addEventListener("pointermove", e => {
    if (!st.down) return;
    const evs = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    const s = st.strokes[st.strokes.length - 1];
    for (const c of (evs.length ? evs : [e])) s.push(at(c));
    redrawPad(); changed();
  });
  const up = () => { if (st.down) { st.down = false; changed(); } };
  pad.addEventListener("pointerup", up);
  pad.addEventListener("pointercancel", up);
  document.getElementById("clear").addEventListener("click", () => { st.strokes = []; redrawPad(); changed(); });
  document.getElementById("undo").addEventListener("click", () => { st.strokes.pop(); redrawPad(); changed(); });
  noise.addEventListener("input", () => { document.getElementById("noise-val").textContent = Number(noise.value).toFixed(2); changed(); });
  document.getElementById("reseed").addEventListener("click", () => { st.seed++; changed(); });

  // a request after the current event has been handled (several events of one task: one request)
  let queued = false;
  function schedule() {
    if (queued || st.inflight) return;
    queued = true;
    queueMicrotask(() => { queued = false; send(); });
  }
  function chosen() { return panels.map(p => p.querySelector("select").value).filter(Boolean); }
  async function send() {
    if (st.inflight || st.sentGen === st.gen) return;
    const runs = chosen();
    if (!runs.length) return;
    const gen = st.gen;
    st.sentGen = gen; st.inflight = true;
    const t0 = performance.now();
    const noiseOn = !document.getElementById("noise-box").hidden;
    try {
      const res = await api("/api/lab/draw", {runs, strokes: st.strokes, size: [pad.width, pad.height], pen: penWidth(),
                                               noise: noiseOn ? Number(noise.value) : 0, seed: st.seed});
      show(res);
      st.paintedGen = gen;
      st.timings.push(performance.now() - t0);
      if (st.onPaint) st.onPaint(gen);
      showError(err, null);
    } catch (e) {
      showError(err, e);
    } finally {
      st.inflight = false;
      if (st.sentGen !== st.gen) schedule();
    }
  }
  function show(res) {
    paint(inputCv, bytes(res.input), 1, 28, 28);
    document.getElementById("noisy-fig").hidden = !res.noisy;
    if (res.noisy) paint(noisyCv, bytes(res.noisy), 1, 28, 28);
    for (const r of res.results) {
      for (const p of panels) {
        if (p.querySelector("select").value !== r.run) continue;
        paint(p.querySelector("canvas.recon"), bytes(r.recon), 1, 28, 28);
        const vae = r.mu !== undefined;
        const vals = vae ? r.mu : r.code;
        drawBars(p.querySelector("canvas.bars"), vals, vae ? r.sigma : null);
        const active = vals.filter(v => Math.abs(v) > 1e-6).length;
        p.querySelector(".bars-caption").textContent = vae
          ? `the code: μ of each of the ${vals.length} latent dimensions (bar) ± σ (black line)`
          : r.discrete ? `the code: ${vals.length} codebook indices (bar height = the entry's number)`
          : `the code: ${vals.length} units, ${active} non-zero for this drawing`;
      }
    }
  }
  function describe(p) {
    const r = st.runs.find(x => x.run === p.querySelector("select").value);
    const info = p.querySelector(".info");
    info.textContent = "";
    if (!r) { info.textContent = "no model chosen"; return; }
    const rows = [["family", r.family + (r.noise > 0 ? `, denoiser (noise ${r.noise})` : "")], ["data", r.data],
                  ["val loss", r.val_loss == null ? "–" : Number(r.val_loss).toFixed(4)], ["folder", r.run]];
    for (const [k, v] of rows) {
      const d = document.createElement("div");
      d.append(`${k}: `);
      const b = document.createElement("b"); b.textContent = v; d.append(b);
      info.append(d);
    }
  }
  function noiseBox() {
    const den = chosen().map(v => st.runs.find(x => x.run === v)).filter(r => r && r.noise > 0);
    const box = document.getElementById("noise-box");
    const was = box.hidden;
    box.hidden = !den.length;
    if (den.length && was) {
      noise.value = den[0].noise;
      document.getElementById("noise-val").textContent = Number(noise.value).toFixed(2);
    }
    document.getElementById("noise-hint").textContent =
      den.length ? `a denoiser was trained on noise ${den.map(r => r.noise).join(", ")}; the noise is seeded (New noise draws other)` : "";
  }
  for (const p of panels) {
    p.querySelector("select").addEventListener("change", () => { describe(p); noiseBox(); st.sentGen = -1; changed(); });
  }

  api("/api/lab/runs").then(j => {
    st.runs = j.runs.filter(r => r.drawable);
    if (!st.runs.length) {
      showError(err, "No finished run on 28×28 grey images in this workspace: train one first (the Train page, or " +
                     "aelab train --limit 2000 --epochs 1), then reload.");
    }
    // ?run=A&b=B choose the models (an empty b: none); else the first two runs
    const keys = ["run", "b"];
    panels.forEach((p, i) => {
      const sel = p.querySelector("select");
      const none = document.createElement("option");
      none.value = ""; none.textContent = "— none —";
      sel.append(none);
      for (const r of st.runs) {
        const o = document.createElement("option");
        o.value = r.run; o.textContent = runLabel(r);
        sel.append(o);
      }
      const want = params.get(keys[i]);
      const pick = want !== null && (want === "" || st.runs.some(r => r.run === want)) ? want
        : (st.runs[i] ? st.runs[i].run : "");
      sel.value = pick;
      describe(p);
    });
    noiseBox();
    redrawPad();
    st.ready = true;
    changed();
  }).catch(e => showError(err, e));
  redrawPad();
}

const root = document.getElementById("draw-root");
if (root) initDraw(root);
