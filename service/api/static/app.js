// The try-it page: load the served tasks, send each chosen image to /v1/predict on its own
// (so a bad file fails alone, next to its thumbnail), and draw every answer as a chart.
import {
  distributionChart,
  formatValue,
  htmlElement,
  nearestLabel,
  numbersTable,
  rankText,
  svgElement,
} from "./chart.js";

const PARALLEL_REQUESTS = 2;
const state = {
  apiKey: null, // in memory only: never written to storage, gone when the tab closes
  models: new Map(), // task name -> ModelInfo from GET /v1/models
  facesSupported: false,
  files: [],
  thumbnails: [],
  waitingForKey: [], // actions to run again once a key is entered
};
const byId = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A JSON request to the service; a failure becomes an ApiError carrying the service's message. */
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.apiKey) headers.set("Authorization", `Bearer ${state.apiKey}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    throw new ApiError(0, "network", `the service did not answer (${error.message})`);
  }
  if (response.ok) return response.json();
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body.error) ({ code, message } = body.error);
  } catch {
    // not a JSON error body: keep the status line
  }
  throw new ApiError(response.status, code, message);
}

function setStatus(text) {
  byId("status").textContent = text;
}

/** Shows the key prompt with the service's 401 message; `retry` runs once a key is entered. */
function needKey(error, retry) {
  state.waitingForKey.push(retry);
  byId("key-message").textContent = error.message;
  const panel = byId("key-panel");
  if (panel.hidden) {
    panel.hidden = false;
    byId("api-key").focus();
  }
}

function useKey(event) {
  event.preventDefault();
  state.apiKey = byId("api-key").value.trim() || null;
  byId("api-key").value = "";
  byId("key-panel").hidden = true;
  const retries = state.waitingForKey.splice(0);
  retries.forEach((retry) => retry());
}

async function loadModels() {
  try {
    const list = await api("/v1/models");
    renderTasks(list.models);
  } catch (error) {
    if (error.status === 401) needKey(error, loadModels);
    byId("task-placeholder").textContent = `Could not load the tasks: ${error.message}`;
  }
}

function renderTasks(models) {
  const list = byId("task-list");
  list.querySelectorAll(".option").forEach((option) => option.remove());
  state.models = new Map(models.map((model) => [model.task, model]));
  byId("task-placeholder").hidden = models.length > 0;
  byId("task-placeholder").textContent = "This service serves no task.";
  for (const model of models) {
    const option = htmlElement("div", "option");
    const box = Object.assign(document.createElement("input"), {
      type: "checkbox",
      id: `task-${model.task}`,
      name: "task",
      value: model.task,
      checked: true,
    });
    const first = model.labels ? model.labels[0] : formatValue(model.values[0]);
    const last = model.labels ? model.labels.at(-1) : formatValue(model.values.at(-1));
    const label = htmlElement("label", "", `${model.task} (${first} to ${last}${model.unit && !model.labels ? ` ${model.unit}` : ""})`);
    label.htmlFor = box.id;
    option.append(box, label);
    list.append(option);
  }
  setStatus(models.length ? "Ready: choose or drop images." : "");
}

/** The faces option exists only where the live API schema has a `faces` query parameter. */
async function detectFaces() {
  try {
    const schema = await api("/openapi.json");
    const parameters = schema.paths?.["/v1/predict"]?.post?.parameters ?? [];
    state.facesSupported = parameters.some((p) => p.name === "faces" && p.in === "query");
  } catch {
    state.facesSupported = false;
  }
  byId("faces-option").hidden = !state.facesSupported;
}

function selectedTasks() {
  return [...document.querySelectorAll('#task-list input[name="task"]:checked')].map((box) => box.value);
}

/** One result card per image: thumbnail first, answers or the error beside it. */
function imageCard(file) {
  const card = htmlElement("article", "card");
  const figure = htmlElement("figure", "thumb");
  const url = URL.createObjectURL(file);
  state.thumbnails.push(url);
  const image = Object.assign(document.createElement("img"), { src: url, alt: file.name });
  image.addEventListener("error", () => image.replaceWith(htmlElement("div", "no-preview", "no preview")));
  const frame = htmlElement("div", "frame");
  frame.append(image);
  figure.append(frame, htmlElement("figcaption", "", file.name));
  const answers = htmlElement("div", "answers");
  answers.append(htmlElement("p", "pending", "Predicting…"));
  card.append(figure, answers);
  return card;
}

function showError(card, message) {
  const answers = card.querySelector(".answers");
  const error = htmlElement("p", "error", message);
  error.setAttribute("role", "alert");
  answers.replaceChildren(error);
}

function taskSection(task, prediction, ref) {
  const section = htmlElement("section", "task");
  section.dataset.task = task;
  section.append(htmlElement("h3", "", task));
  const distribution = prediction.distribution;
  const unit = state.models.get(task)?.unit ?? "";
  const expected = htmlElement("p", "expected");
  const number = htmlElement("span", "expected-value", prediction.expected.toFixed(1));
  if (distribution?.labels) {
    expected.append(htmlElement("span", "expected-label", nearestLabel(distribution, prediction.expected)), " (", number, ")");
  } else {
    expected.append(number, unit ? ` ${unit}` : "");
  }
  section.append(expected);
  const { level, low, high } = prediction.interval;
  const named = distribution ?? { values: [], labels: null };
  const suffix = unit && !named.labels ? ` ${unit}` : "";
  section.append(
    htmlElement("p", "interval", `${Math.round(level * 100)}% interval: ${rankText(named, low)} to ${rankText(named, high)}${suffix}`),
  );
  if (distribution) {
    section.append(distributionChart(task, prediction, unit), numbersTable(distribution));
    if (!performance.getEntriesByName("oclip-first-chart").length) performance.mark("oclip-first-chart");
  }
  if (ref) section.append(htmlElement("p", "model", `model ${ref.task} ${ref.version} · backbone ${ref.backbone}`));
  return section;
}

function taskSections(results, answer) {
  return answer.tasks.filter((task) => results[task]).map((task) => taskSection(task, results[task], answer.models[task]));
}

/** Face boxes over the thumbnail, in the image's own pixel coordinates. */
async function drawFaces(card, faces) {
  const image = card.querySelector(".frame img");
  if (!image) return;
  if (!image.complete) await new Promise((done) => image.addEventListener("load", done, { once: true }));
  const { naturalWidth: width, naturalHeight: height } = image;
  const overlay = svgElement("svg", { class: "faces", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", "aria-hidden": "true" });
  faces.forEach((face, i) => {
    const { x, y, width: w, height: h } = face.box;
    overlay.append(svgElement("rect", { class: "face-box", x, y, width: w, height: h }));
    const size = Math.max(w / 3, width / 18); // readable on a small thumbnail too
    const label = { class: "face-label", x: x + size / 5, y: y + size, "font-size": size, "stroke-width": size / 10 };
    overlay.append(svgElement("text", label, String(i + 1)));
  });
  card.querySelector(".frame").append(overlay);
}

function renderAnswer(card, answer) {
  const prediction = answer.predictions[0];
  const answers = card.querySelector(".answers");
  answers.replaceChildren(...taskSections(prediction.results ?? {}, answer));
  if (!Array.isArray(prediction.faces)) return;
  if (!prediction.faces.length) answers.append(htmlElement("p", "hint", "No face found."));
  prediction.faces.forEach((face, i) => {
    const group = htmlElement("section", "face");
    group.append(htmlElement("h3", "", `Face ${i + 1} (score ${face.score.toFixed(2)})`));
    group.append(...taskSections(face.results ?? {}, answer));
    answers.append(group);
  });
  drawFaces(card, prediction.faces);
}

async function predictOne(file, tasks, faces, card) {
  const form = new FormData();
  form.append("image", file, file.name);
  const query = new URLSearchParams({ tasks: tasks.join(",") });
  if (faces) query.set("faces", "true");
  try {
    renderAnswer(card, await api(`/v1/predict?${query}`, { method: "POST", body: form }));
    return true;
  } catch (error) {
    showError(card, error.message);
    if (error.status === 401) needKey(error, () => predictOne(file, tasks, faces, card));
    return false;
  }
}

async function predictAll() {
  const tasks = selectedTasks();
  if (!state.files.length) return setStatus("Choose or drop at least one image.");
  if (!tasks.length) return setStatus("Choose at least one task.");
  performance.clearMarks();
  performance.mark("oclip-predict-start");
  state.thumbnails.splice(0).forEach((url) => URL.revokeObjectURL(url));
  const faces = state.facesSupported && byId("faces").checked;
  const jobs = state.files.map((file) => ({ file, card: imageCard(file) }));
  byId("results").replaceChildren(...jobs.map((job) => job.card));
  setStatus(`Predicting ${jobs.length} image${jobs.length === 1 ? "" : "s"}…`);
  let answered = 0;
  const queue = [...jobs];
  const worker = async () => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      if (await predictOne(job.file, tasks, faces, job.card)) answered += 1;
    }
  };
  await Promise.all(Array.from({ length: PARALLEL_REQUESTS }, worker));
  setStatus(`Done: ${answered} of ${jobs.length} image${jobs.length === 1 ? "" : "s"} answered.`);
}

function chooseFiles(files) {
  state.files = [...files];
  predictAll();
}

function wireDropZone() {
  const zone = byId("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    chooseFiles(event.dataTransfer.files);
  });
}

byId("images").addEventListener("change", (event) => chooseFiles(event.target.files));
byId("predict-form").addEventListener("submit", (event) => {
  event.preventDefault();
  predictAll();
});
byId("key-form").addEventListener("submit", useKey);
wireDropZone();
detectFaces();
loadModels();
