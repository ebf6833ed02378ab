// aelab lab: the Explore page. The map (/api/lab/map) is drawn once on a canvas; hover, selection and
// markers go on an overlay canvas above it, so a hover repaints a few shapes and one image cut from
// the sprite sheet (/api/lab/sprites, fetched once) — within the frame. Decodings come from the server.
import {api, bytes, floats, imageCanvases, ints, paint, runLabel, showError} from "./draw.js";

// Matplotlib's tab10: the colours of aelab latent's map.png
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const METHOD_NAMES = {code: "the code itself", pca: "PCA of the code", tsne: "t-SNE of the code (2,000 points; slow)"};
const HIT = 10;  // CSS pixels: how near a dot the pointer must be

function initExplore() {
  const err = document.getElementById("ex-error");
  const runSel = document.getElementById("run"), methodSel = document.getElementById("method");
  const base = document.getElementById("map"), over = document.getElementById("overlay");
  const hover = document.getElementById("hover"), hoverImg = document.getElementById("hover-img");
  const status = document.getElementById("status");
  const params = new URLSearchParams(location.search);
  const st = {runs: [], run: null, map: null, pts: null, order: null, labels: null, sprite: null, view: null,
              sel: null, b: null, loc: null, z: null, hoverTimes: [], hovered: -1, seed: 0, busy: false, pending: null,
              loaded: false};
  window.aelabExplore = st;

  // -- the map --
  function layout() {
    const dpr = window.devicePixelRatio || 1;
    const W = Math.round(base.clientWidth * dpr), H = Math.round(base.clientHeight * dpr);
    for (const c of [base, over]) { c.width = W; c.height = H; }
    const n = st.pts.length / 2;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      const x = st.pts[2 * i], y = st.pts[2 * i + 1];
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
    const span = Math.max(x1 - x0, y1 - y0, 1e-9) * 1.08;
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, s = Math.min(W, H) / span;
    // equal scales on both axes (a distance on screen is a distance in the map); y grows upwards
    st.view = {dpr, W, H, s, cx, cy,
               sx: x => W / 2 + (x - cx) * s, sy: y => H / 2 - (y - cy) * s,
               mx: px => cx + (px - W / 2) / s, my: py => cy - (py - H / 2) / s};
  }
  function drawMap() {
    layout();
    const {W, H, dpr, sx, sy} = st.view;
    const ctx = base.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
    // axes through the origin when it is in view (a 2-D code, or PCA's centre)
    ctx.strokeStyle = "#e3e8ee"; ctx.lineWidth = dpr;
    ctx.beginPath(); ctx.moveTo(sx(0), 0); ctx.lineTo(sx(0), H); ctx.moveTo(0, sy(0)); ctx.lineTo(W, sy(0)); ctx.stroke();
    const n = st.pts.length / 2, r = 2.2 * dpr;
    ctx.globalAlpha = 0.75;
    for (let i = 0; i < n; i++) {
      ctx.fillStyle = st.labels ? COLOURS[((st.labels[i] % 10) + 10) % 10] : "#1f5fbf";
      ctx.beginPath(); ctx.arc(sx(st.pts[2 * i]), sy(st.pts[2 * i + 1]), r, 0, 2 * Math.PI); ctx.fill();
    }
    ctx.globalAlpha = 1;
    const m = st.map.method;
    const ax = m === "code" ? ["z₁", "z₂"] : m === "pca" ? ["PC 1", "PC 2"] : ["t-SNE 1", "t-SNE 2"];
    ctx.fillStyle = "#4a5563"; ctx.font = `${15 * dpr}px system-ui, sans-serif`;
    ctx.fillText(`${ax[0]} →`, W - 70 * dpr, H - 8 * dpr);
    ctx.save(); ctx.translate(14 * dpr, 70 * dpr); ctx.rotate(-Math.PI / 2); ctx.fillText(`${ax[1]} →`, 0, 0); ctx.restore();
    drawOverlay();
  }
  function ring(ctx, i, colour, size) {
    const {sx, sy, dpr} = st.view;
    ctx.strokeStyle = colour; ctx.lineWidth = 3 * dpr;
    ctx.beginPath(); ctx.arc(sx(st.pts[2 * i]), sy(st.pts[2 * i + 1]), size * dpr, 0, 2 * Math.PI); ctx.stroke();
  }
  function drawOverlay() {
    const ctx = over.getContext("2d");
    ctx.clearRect(0, 0, over.width, over.height);
    if (st.sel != null) ring(ctx, st.sel, "#000", 8);
    if (st.b != null) ring(ctx, st.b, "#b3261e", 8);
    if (st.loc) {
      const {sx, sy, dpr} = st.view, x = sx(st.loc[0]), y = sy(st.loc[1]), k = 8 * dpr;
      ctx.strokeStyle = "#000"; ctx.lineWidth = 3 * dpr;
      ctx.beginPath(); ctx.moveTo(x - k, y - k); ctx.lineTo(x + k, y + k); ctx.moveTo(x + k, y - k); ctx.lineTo(x - k, y + k); ctx.stroke();
    }
    if (st.hovered >= 0) ring(ctx, st.hovered, "#14263f", 6);
  }
  function nearest(e) {
    const r = over.getBoundingClientRect(), {dpr} = st.view;
    const px = (e.clientX - r.left) * dpr, py = (e.clientY - r.top) * dpr;
    let best = -1, bd = (HIT * dpr) ** 2;
    const {sx, sy} = st.view, n = st.pts.length / 2;
    for (let i = 0; i < n; i++) {
      const dx = sx(st.pts[2 * i]) - px, dy = sy(st.pts[2 * i + 1]) - py, d = dx * dx + dy * dy;
      if (d < bd) { bd = d; best = i; }
    }
    return {i: best, px, py};
  }
  // one test image (its index in the codes) from the sprite sheet onto a canvas
  function sprite(canvas, k) {
    const [c, h, w] = st.map.image_shape;
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    if (st.sprite) ctx.drawImage(st.sprite, (k % 100) * w, Math.floor(k / 100) * h, w, h, 0, 0, w, h);
  }
  function labelOf(i) {
    if (!st.labels) return "";
    const y = st.labels[i], names = st.map.names || [];
    return y < names.length ? names[y] : String(y);
  }
  over.addEventListener("pointermove", e => {
    if (!st.pts) return;
    const {i} = nearest(e);
    if (i !== st.hovered) {
      st.hovered = i;
      if (i >= 0 && st.map.image_shape) {
        sprite(hoverImg, st.order[i]);
        document.getElementById("hover-label").textContent = labelOf(i);
        const r = over.getBoundingClientRect();
        const x = e.clientX - r.left, y = e.clientY - r.top;
        hover.style.left = `${x + 110 > r.width ? x - 110 : x + 16}px`;
        hover.style.top = `${y + 120 > r.height ? y - 120 : y + 16}px`;
        hover.style.display = "block";
      } else {
        hover.style.display = "none";
      }
      drawOverlay();
    }
    st.hoverTimes.push(performance.now() - e.timeStamp);
  });
  over.addEventListener("pointerleave", () => { st.hovered = -1; hover.style.display = "none"; if (st.pts) drawOverlay(); });
  over.addEventListener("click", e => {
    if (!st.pts) return;
    const {i, px, py} = nearest(e);
    if (i >= 0) {
      if (e.shiftKey && st.sel != null && i !== st.sel) interpolate(i); else select(i);
    } else if (st.map.plane) {
      decodeAt([st.view.mx(px), st.view.my(py)]);
    }
  });

  // -- selection, neighbours, traversal --
  const card = id => document.getElementById(id);
  async function select(i) {
    st.sel = i; st.loc = null; st.b = null; drawOverlay();
    card("interp-card").hidden = true;
    try {
      const res = await api("/api/lab/point", {run: st.run, index: st.order[i]});
      card("sel-title").textContent = `Test image ${res.index}` + (res.label != null ? ` — label ${labelOf(i)}` : "");
      card("orig-fig").hidden = false; card("dec-fig").hidden = false; card("nn-box").hidden = false;
      card("dec-cap").textContent = "decoded from its code";
      if (st.map.image_shape) sprite(card("orig"), res.index);
      showDecoded(res.decoded);
      const nb = card("neighbours"); nb.textContent = "";
      const where = new Map(); st.order.forEach((k, j) => where.set(k, j));
      for (const k of res.neighbours) {
        const cv = document.createElement("canvas"); cv.className = "pix";
        if (st.map.image_shape) sprite(cv, k);
        cv.title = `test image ${k}`; cv.style.cursor = "pointer";
        if (where.has(k)) cv.addEventListener("click", () => select(where.get(k)));
        nb.append(cv);
      }
      st.z = res.code.slice();
      sliders(res.sliders);
      showError(err, null);
    } catch (e) { showError(err, e); }
  }
  function showDecoded(images) {
    const [, c, h, w] = images.shape;
    paint(card("decoded"), bytes(images.data), c, h, w);
  }
  function sliders(list) {
    const box = card("sliders"); box.textContent = "";
    card("trav-card").hidden = !list.length;
    for (const s of list) {
      const lab = document.createElement("label"); lab.textContent = `dim ${s.dim + 1}`;
      const inp = document.createElement("input");
      inp.type = "range"; inp.min = s.lo; inp.max = s.hi; inp.step = (s.hi - s.lo) / 200 || 0.01;
      inp.value = Math.min(Math.max(s.value, s.lo), s.hi); inp.dataset.dim = s.dim;
      const val = document.createElement("b"); val.textContent = Number(s.value).toFixed(2);
      inp.addEventListener("input", () => {
        st.z[s.dim] = Number(inp.value); val.textContent = Number(inp.value).toFixed(2);
        card("dec-cap").textContent = "decoded, dimensions changed";
        decodeLatest(st.z.slice());
      });
      box.append(lab, inp, val);
    }
  }
  // one decode in flight; a newer request replaces the waiting one
  async function decodeLatest(z) {
    st.pending = z;
    if (st.busy) return;
    st.busy = true;
    try {
      while (st.pending) {
        const zz = st.pending; st.pending = null;
        const res = await api("/api/lab/decode", {run: st.run, z: [zz]});
        showDecoded(res.decoded);
      }
      showError(err, null);
    } catch (e) { showError(err, e); } finally { st.busy = false; }
  }
  async function decodeAt(p) {
    const pl = st.map.plane;
    const z = pl.mean.map((m, k) => m + p[0] * pl.axes[0][k] + p[1] * pl.axes[1][k]);
    st.loc = p; st.sel = null; st.b = null; drawOverlay();
    card("sel-title").textContent = `A location of the map (${p[0].toFixed(2)}, ${p[1].toFixed(2)})`;
    card("orig-fig").hidden = true; card("nn-box").hidden = true; card("dec-fig").hidden = false;
    card("trav-card").hidden = true; card("interp-card").hidden = true;
    card("dec-cap").textContent = st.map.method === "code" ? "decoded from this point of the code space"
      : "decoded from this point of the PCA plane";
    await decodeLatest(z);
  }
  async function interpolate(i) {
    st.b = i; drawOverlay();
    try {
      const res = await api("/api/lab/interpolate", {run: st.run, a: st.order[st.sel], b: st.order[i], steps: 10});
      const strip = card("interp"); strip.textContent = "";
      const a = document.createElement("canvas"), b = document.createElement("canvas");
      a.className = b.className = "pix";
      sprite(a, res.a); sprite(b, res.b);
      strip.append(a, ...imageCanvases(res.decoded), b);
      card("interp-hint").textContent = `from the selected image (left) to the Shift+clicked one (right), ` +
        `${res.spherical ? "spherical" : "linear"} interpolation between their codes, decoded`;
      card("interp-card").hidden = false;
      showError(err, null);
    } catch (e) { showError(err, e); }
  }
  document.getElementById("sample").addEventListener("click", async () => {
    try {
      const res = await api("/api/lab/prior", {run: st.run, n: 16, seed: st.seed++});
      const strip = card("prior"); strip.textContent = ""; strip.append(...imageCanvases(res.decoded));
    } catch (e) { showError(err, e); }
  });

  // -- loading a run's map --
  async function load(method) {
    st.loaded = false; st.sel = st.b = st.loc = null; st.hovered = -1;
    for (const id of ["orig-fig", "dec-fig", "nn-box", "trav-card", "interp-card"]) card(id).hidden = true;
    card("sel-title").textContent = "Click a dot on the map";
    card("prior").textContent = "";
    status.textContent = method === "tsne" ? "computing t-SNE (this takes a while)…" : "loading the codes…";
    try {
      const m = await api(`/api/lab/map?run=${encodeURIComponent(st.run)}&method=${method}`);
      st.map = m; st.pts = floats(m.points); st.order = ints(m.order);
      st.labels = m.labels ? ints(m.labels) : null;
      methodSel.textContent = "";
      for (const k of m.methods) {
        const o = document.createElement("option"); o.value = k; o.textContent = METHOD_NAMES[k] || k;
        methodSel.append(o);
      }
      methodSel.value = m.method;
      if (m.image_shape && (!st.sprite || st.spriteRun !== st.run)) {
        st.sprite = await new Promise((ok, bad) => {
          const img = new Image();
          img.onload = () => ok(img);
          img.onerror = () => bad(new Error("the test images (sprite sheet) did not load"));
          img.src = `/api/lab/sprites?run=${encodeURIComponent(st.run)}`;
        });
        st.spriteRun = st.run;
      }
      drawMap();
      legend();
      card("prior-card").hidden = !m.stochastic;
      const how = m.method === "code" ? "the code itself" : METHOD_NAMES[m.method];
      status.textContent = `${m.n.toLocaleString("en")} test images · ${m.dims}-D code${m.stochastic ? " (μ)" : ""} · ${how}`;
      document.getElementById("map-hint").textContent = "Each dot is a test image, placed by its code. Hover to see " +
        "the image; click to decode it and see its nearest neighbours; Shift+click a second dot to interpolate." +
        (m.plane ? " Click between the dots to decode that location." : "");
      st.loaded = true;
      showError(err, null);
    } catch (e) { status.textContent = ""; showError(err, e); }
  }
  function legend() {
    const box = document.getElementById("legend"); box.textContent = "";
    if (!st.labels) return;
    const seen = [...new Set(st.labels)].sort((a, b) => a - b);
    for (const y of seen) {
      const s = document.createElement("span");
      s.style.setProperty("--c", COLOURS[((y % 10) + 10) % 10]);
      const names = st.map.names || [];
      s.textContent = y < names.length ? names[y] : String(y);
      box.append(s);
    }
  }
  runSel.addEventListener("change", () => { st.run = runSel.value; load("auto"); });
  methodSel.addEventListener("change", () => load(methodSel.value));
  window.addEventListener("resize", () => { if (st.pts) drawMap(); });

  api("/api/lab/runs").then(j => {
    st.runs = j.runs;
    if (!st.runs.length) { showError(err, "No finished run in this workspace: train one first (the Train page), then reload."); return; }
    for (const r of st.runs) {
      const o = document.createElement("option"); o.value = r.run; o.textContent = runLabel(r); runSel.append(o);
    }
    const want = params.get("run");
    st.run = want && st.runs.some(r => r.run === want) ? want : st.runs[0].run;
    runSel.value = st.run;
    load(params.get("method") || "auto");
  }).catch(e => showError(err, e));
}

if (document.getElementById("explore-root")) initExplore();
