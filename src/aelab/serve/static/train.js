// The train form: choosing a preset or a family reloads the form filled from it (the server's defaults).
const preset = document.getElementById("preset");
const family = document.getElementById("family");

function reload(useFamily) {
  const q = new URLSearchParams();
  if (preset.value) q.set("preset", preset.value);
  if (useFamily) q.set("family", family.value);
  location.assign("/train" + (q.toString() ? "?" + q : ""));
}
preset.addEventListener("change", () => reload(false));
family.addEventListener("change", () => reload(true));
document.getElementById("train-form").addEventListener("submit", () => {
  const b = document.getElementById("start");
  b.disabled = true;
  b.textContent = "Starting…";
});
