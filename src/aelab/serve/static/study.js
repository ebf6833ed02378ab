// A study's page: each run's epochs and the whole study's progress, by server-sent events.
const root = document.querySelector(".study-page");
const rel = root.dataset.study;
const base = "/studies/job/" + rel.split("/").map(encodeURIComponent).join("/");
const $ = (id) => document.getElementById(id);
const LIVE = new Set(["starting", "training", "reporting", "stopping"]);
const runs = {};

function say(text, error) {
  $("message").textContent = text || "";
  $("message").className = "message " + (error ? "error" : "info") + (text ? "" : " hidden");
}

function setState(s, message) {
  $("study-state").textContent = s;
  $("study-state").className = "status " + (LIVE.has(s) ? "running" : s === "stopped" ? "interrupted" : s);
  $("btn-stop").disabled = !LIVE.has(s) || s === "stopping";
  $("btn-stop").classList.toggle("hidden", !LIVE.has(s));
  if (message !== undefined) say(message, s === "failed");
}

function row(i, r) {
  runs[i] = r;
  let tr = document.querySelector(`tr[data-index="${i}"]`);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.index = i;
    tr.innerHTML = "<td></td><td><span class='status'></span></td><td></td><td class='num'></td><td><div class='progress'><div></div></div></td>";
    const body = document.querySelector("#study-runs tbody");
    const after = [...body.children].find((t) => Number(t.dataset.index) > Number(i));
    body.insertBefore(tr, after || null);
  }
  const td = tr.children;
  td[0].textContent = r.name;
  td[1].firstChild.textContent = r.state;
  td[1].firstChild.className = "status " + (r.state === "training" || r.state === "finishing" ? "running" : r.state);
  td[2].textContent = r.epochs ? `${r.epoch} / ${r.epochs}` : "–";
  td[3].textContent = r.val_loss === null || r.val_loss === undefined ? "–" : r.val_loss.toFixed(4);
  td[4].querySelector(".progress > div").style.width = r.epochs ? `${(100 * r.epoch) / r.epochs}%` : "0";
}

function progress(done, total) {
  $("bar").style.width = total ? `${(100 * done) / total}%` : "0";
  $("progress-text").textContent = total ? `${done} of ${total} units of work (an epoch or a finishing step of a run)` : "";
}

const es = new EventSource(base + "/events");
es.addEventListener("snapshot", (ev) => {
  const s = JSON.parse(ev.data);
  for (const [i, r] of Object.entries(s.runs)) row(i, r);
  progress(s.done, s.total);
  setState(s.state, s.message);
  if (s.report && s.state === "finished") $("report-link").classList.remove("hidden");
});
es.addEventListener("run", (ev) => { const r = JSON.parse(ev.data); row(r.index, r); });
es.addEventListener("progress", (ev) => { const p = JSON.parse(ev.data); progress(p.done, p.total); });
es.addEventListener("report", () => $("report-link").classList.remove("hidden"));
es.addEventListener("state", (ev) => {
  const s = JSON.parse(ev.data);
  if (s.state === "server-stopped") { es.close(); setState("stopped", s.message); return; }
  setState(s.state, s.message);
});
$("btn-stop").addEventListener("click", async () => {
  $("btn-stop").disabled = true;
  const r = await fetch(base + "/stop", { method: "POST" });
  const body = await r.json();
  if (!body.ok) say(body.message, true);
});
