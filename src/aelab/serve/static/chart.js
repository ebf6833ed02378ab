// Loss curves as plain SVG: one small chart per loss term, training solid, validation dashed.
const NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f5fbf", "#c0392b", "#17703a", "#8e44ad", "#b9770e", "#117a8b"];
const W = 520, H = 260, L = 64, R = 14, T = 12, B = 40;

function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function fmt(v) {
  const a = Math.abs(v);
  return a !== 0 && (a < 0.01 || a >= 1e4) ? v.toExponential(1) : v.toPrecision(3);
}

const same = (a, b) => a && b && a.length === b.length && a.every((v, i) => Math.abs(v - b[i]) <= 1e-9 * Math.max(1, Math.abs(v)));

/** The terms worth a chart: the loss, then each named term unless it repeats the loss or is all zero. */
export function terms(history) {
  const names = Object.keys(history).filter((k) => !k.startsWith("val_"));
  const out = names.includes("loss") ? ["loss"] : [];
  for (const k of names) {
    if (k === "loss") continue;
    const v = history[k] || [];
    if (!v.length || v.every((x) => x === 0 || x === null)) continue;
    if (same(v, history.loss) && same(history["val_" + k], history.val_loss)) continue;
    out.push(k);
  }
  // the penalty is the family's own term when it has one (a VAE's KL): drawn once, under its name
  const named = out.filter((k) => k !== "loss" && k !== "reconstruction" && k !== "penalty");
  return out.filter((k) => k !== "penalty" || !named.some((n) => same(history[n], history.penalty)));
}

export function drawCurves(box, history, epochs) {
  const names = terms(history);
  box.innerHTML = "";
  if (!names.length) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "The curves appear after the first epoch.";
    box.appendChild(p);
    return;
  }
  names.forEach((name, i) => {
    const card = document.createElement("div");
    card.className = "chart-box";
    card.dataset.term = name;
    const h3 = document.createElement("h3");
    h3.textContent = name === "loss" ? "loss (what training minimises)" : name;
    card.appendChild(h3);
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${name}: training and validation per epoch` }, card);
    const tr = (history[name] || []).map((v) => (v === null ? NaN : v));
    const va = (history["val_" + name] || []).map((v) => (v === null ? NaN : v));
    const all = tr.concat(va).filter(Number.isFinite);
    let lo = Math.min(...all), hi = Math.max(...all);
    if (!(hi > lo)) { lo -= Math.abs(lo) * 0.05 + 1e-6; hi += Math.abs(hi) * 0.05 + 1e-6; }
    const pad = (hi - lo) * 0.08;
    lo -= pad; hi += pad;
    const n = Math.max(epochs || 0, tr.length, va.length, 2);
    const x = (e) => L + ((e - 1) / (n - 1)) * (W - L - R);
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
    el("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fbfcfd", stroke: "#c6ced6" }, svg);
    for (let k = 0; k <= 4; k++) {
      const v = lo + ((hi - lo) * k) / 4;
      el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e3e8ee" }, svg);
      el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, svg).textContent = fmt(v);
    }
    const step = Math.max(1, Math.ceil(n / 8));
    for (let e = 1; e <= n; e += step) {
      el("text", { x: x(e), y: H - B + 18, "text-anchor": "middle" }, svg).textContent = e;
    }
    el("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, svg).textContent = "epoch";
    const color = COLORS[i % COLORS.length];
    [[tr, "", "train"], [va, "7 5", "val"]].forEach(([vals, dash, kind]) => {
      const pts = vals.map((v, k) => [x(k + 1), y(v)]).filter((p) => Number.isFinite(p[1]));
      if (pts.length > 1) {
        el("polyline", { points: pts.map((p) => p.join(",")).join(" "), fill: "none", stroke: color,
          "stroke-width": 3, "stroke-dasharray": dash }, svg);
      }
      for (const [px, py] of pts) {
        el("circle", { cx: px, cy: py, r: 4, fill: kind === "train" ? color : "#fff", stroke: color, "stroke-width": 2,
          class: "pt " + kind }, svg);
      }
    });
    const last = (a) => a.filter(Number.isFinite).slice(-1)[0];
    const leg = document.createElement("div");
    leg.className = "legend";
    leg.style.setProperty("--c", color);
    const lt = last(tr), lv = last(va);
    leg.innerHTML = "";
    const a = document.createElement("span"); a.textContent = `training ${lt === undefined ? "–" : fmt(lt)}`;
    const b = document.createElement("span"); b.className = "val"; b.textContent = `validation ${lv === undefined ? "–" : fmt(lv)}`;
    leg.append(a, b);
    card.appendChild(leg);
    box.appendChild(card);
  });
}
