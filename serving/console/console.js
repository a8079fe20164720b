// The model console: builds a form from a served model's signature (and the schema its export
// carries), sends TF Serving's REST :predict request and draws the answer. No framework, no build.
"use strict";

const MAX_UPLOAD_BYTES = 4 * 1024 * 1024;  // client-side limit on an uploaded image file
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/bmp"];
const PREDICT_METHOD = "tensorflow/serving/predict";
const SHOWN_B64_CHARS = 60;  // longer b64 strings are abbreviated in the request shown on the page

const $ = (id) => document.getElementById(id);
const state = { models: [], maxBodyBytes: null, signatures: {}, schema: { features: {}, label_names: [] },
                fields: [], image: null };

class InputError extends Error {}

function showMessage(text) {
  $("message").textContent = text || "";
  $("message").hidden = !text;
}

async function getJson(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new Error(`Could not reach the server (${error.message}).`);
  }
  let body = null;
  try { body = await response.json(); } catch (error) { /* not JSON: reported below */ }
  if (!response.ok || body === null) {
    throw new Error(`GET ${url} answered HTTP ${response.status}: ${(body && body.error) || "no JSON body"}`);
  }
  return body;
}

function currentModel() {
  return state.models.find((model) => model.name === $("model").value);
}

function currentVersion() {
  const model = currentModel();
  return model && model.versions.find((version) => String(version.version) === $("version").value);
}

function modelPath() {
  return `/v1/models/${encodeURIComponent(currentModel().name)}/versions/${currentVersion().version}`;
}

function resetAnswer() {
  $("answer").hidden = true;
  $("exchange").hidden = true;
  showMessage("");
}

async function loadModels() {
  const listing = await getJson("/console/api/models");
  state.models = listing.models;
  state.maxBodyBytes = listing.max_body_bytes;
  $("model").replaceChildren(...state.models.map((model) => new Option(model.name, model.name)));
  const wanted = new URLSearchParams(location.search).get("model");
  if (wanted && state.models.some((model) => model.name === wanted)) $("model").value = wanted;
  if (!state.models.length) throw new Error("This server has no models configured.");
  await onModel();
}

async function onModel() {
  const model = currentModel();
  $("version").replaceChildren(...model.versions.map((v) => new Option(String(v.version), String(v.version))));
  if (!model.versions.length) {
    $("fields").replaceChildren();
    $("report-link").hidden = true;
    $("predict").disabled = true;  // nothing to send to until a version is served
    throw new Error(`Model ${model.name} has no version loaded yet; reload the page once one is available.`);
  }
  await onVersion();
}

async function onVersion() {
  resetAnswer();
  const model = currentModel();
  const version = currentVersion();
  $("report-link").hidden = true;
  const [metadata, schema] = await Promise.all([
    getJson(`${modelPath()}/metadata`),
    getJson(`/console/api/models/${encodeURIComponent(model.name)}/versions/${version.version}/schema`),
  ]);
  state.schema = schema;
  state.signatures = metadata.metadata.signature_def.signature_def;
  const names = Object.keys(state.signatures)
    .filter((name) => !name.startsWith("__") && state.signatures[name].method_name === PREDICT_METHOD)
    .sort((a, b) => (b === "serving_default") - (a === "serving_default") || a.localeCompare(b));
  $("signature").replaceChildren(...names.map((name) => new Option(name, name)));
  if (!names.length) throw new Error(`Version ${version.version} of ${model.name} has no predict signature.`);
  buildForm();
  $("report-link").hidden = !version.report;  // shown once the version's form is ready
  if (version.report) $("report-link").href = version.report;
}

function innerShape(info) {
  const shape = info.tensor_shape || {};
  if (shape.unknown_rank) return null;
  return (shape.dim || []).slice(1).map((dim) => Number(dim.size));
}

function isImageInput(name, info, domain) {
  if (info.dtype !== "DT_STRING" || domain.values) return false;
  return domain.image === true || /(^|_)images?($|_)|_bytes$/i.test(name);
}

function buildForm() {
  resetAnswer();
  const inputs = state.signatures[$("signature").value].inputs;
  state.image = null;
  state.fields = Object.keys(inputs).sort().map((name) => {
    const info = inputs[name];
    const domain = state.schema.features[name] || {};
    const shape = innerShape(info);
    const scalar = shape !== null && shape.every((size) => size === 1);
    const kind = isImageInput(name, info, domain) ? "image"
      : !scalar ? "json"
      : info.dtype === "DT_STRING" ? "string"
      : info.dtype === "DT_BOOL" ? "bool"
      : /INT/.test(info.dtype) ? "int" : "float";
    return { name, kind, shape, domain, dtype: info.dtype };
  });
  $("fields").replaceChildren(...state.fields.map(fieldElement));
  $("predict").disabled = false;
}

function fieldElement(field) {
  const row = document.createElement("div");
  row.className = "field";
  const label = document.createElement("label");
  label.textContent = field.name;
  label.htmlFor = `input-${field.name}`;
  const hint = document.createElement("small");
  let input;
  if (field.kind === "image") {
    input = document.createElement("input");
    input.type = "file";
    input.accept = IMAGE_TYPES.join(",");
    input.addEventListener("change", () => onImage(input));
    hint.textContent = `an image file (PNG, JPEG, GIF or BMP, at most ${megabytes(MAX_UPLOAD_BYTES)}), ` +
                       "sent as encoded bytes {\"b64\": ...}";
    const preview = document.createElement("img");
    preview.id = "preview";
    preview.alt = "preview of the uploaded image";
    preview.hidden = true;
    hint.append(document.createElement("br"), preview);
  } else if (field.domain.values || field.kind === "bool") {
    input = document.createElement("select");
    const values = field.kind === "bool" ? ["true", "false"] : field.domain.values;
    input.append(new Option("choose...", ""), ...values.map((value) => new Option(value, value)));
    hint.textContent = field.kind === "bool" ? "bool" : `one of the schema's ${values.length} values`;
  } else {
    input = document.createElement("input");
    if (field.kind === "int" || field.kind === "float") {
      input.type = "number";
      input.step = field.kind === "int" ? "1" : "any";
      if ("min" in field.domain) input.min = field.domain.min;
      if ("max" in field.domain) input.max = field.domain.max;
      const range = rangeText(field.domain);
      hint.textContent = `${field.kind === "int" ? "whole number" : "number"} (${field.dtype})` +
                         (range ? `, schema range: ${range}` : "");
    } else {
      input.type = "text";
      hint.textContent = field.kind === "json"
        ? `JSON value of shape [${field.shape === null ? "any" : field.shape.join(", ")}] (${field.dtype})`
        : `text (${field.dtype})`;
    }
  }
  input.id = `input-${field.name}`;
  input.name = field.name;
  row.append(label, input, hint);
  return row;
}

function rangeText(domain) {
  const hasMin = "min" in domain;
  const hasMax = "max" in domain;
  if (hasMin && hasMax) return `between ${domain.min} and ${domain.max}`;
  if (hasMin) return `at least ${domain.min}`;
  return hasMax ? `at most ${domain.max}` : "";
}

function megabytes(bytes) {
  return `${(bytes / (1024 * 1024)).toFixed(bytes < 1024 * 1024 ? 2 : 1)} MB`;
}

function onImage(input) {
  state.image = null;
  showMessage("");
  const preview = $("preview");
  preview.hidden = true;
  const file = input.files[0];
  if (!file) return;
  if (!IMAGE_TYPES.includes(file.type)) {
    input.value = "";
    showMessage(`${file.name} is not an image the console can send (${file.type || "unknown type"}); ` +
                "choose a PNG, JPEG, GIF or BMP file.");
    return;
  }
  if (file.size > MAX_UPLOAD_BYTES) {
    input.value = "";
    showMessage(`${file.name} is ${megabytes(file.size)}; the console sends images of at most ` +
                `${megabytes(MAX_UPLOAD_BYTES)}.`);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    const url = reader.result;
    state.image = { name: file.name, b64: url.slice(url.indexOf(",") + 1) };
    preview.src = url;
    preview.hidden = false;
  };
  reader.onerror = () => showMessage(`Could not read ${file.name}: ${reader.error}`);
  reader.readAsDataURL(file);
}

function fieldValue(field, problems) {
  if (field.kind === "image") return state.image ? { b64: state.image.b64 } : undefined;
  const raw = $(`input-${field.name}`).value.trim();
  if (raw === "") return undefined;
  if (field.kind === "string") return raw;
  if (field.kind === "bool") return raw === "true";
  if (field.kind === "json") {
    try { return JSON.parse(raw); } catch (error) { problems.push(`${field.name} must be JSON, e.g. [1, 2].`); }
    return null;
  }
  const number = Number(raw);
  if (!Number.isFinite(number)) problems.push(`${field.name} must be a number.`);
  else if (field.kind === "int" && !Number.isInteger(number)) problems.push(`${field.name} must be a whole number.`);
  else if (("min" in field.domain && number < field.domain.min) || ("max" in field.domain && number > field.domain.max)) {
    problems.push(`${field.name} must be ${rangeText(field.domain)} (the schema's range).`);
  }
  return number;
}

function instanceFromForm() {
  const instance = {};
  const missing = [];
  const problems = [];
  for (const field of state.fields) {
    let value = fieldValue(field, problems);
    if (value === undefined) {
      missing.push(field.name);
      continue;
    }
    for (let i = 0; field.shape && field.kind !== "json" && i < field.shape.length; i += 1) value = [value];
    instance[field.name] = value;
  }
  if (missing.length && missing.length === state.fields.length) {
    throw new InputError(state.fields.some((f) => f.kind === "image")
      ? "Choose an image file first." : "The form is empty: fill in every field, then Predict.");
  }
  if (missing.length) throw new InputError(`Fill in every field; missing: ${missing.join(", ")}.`);
  if (problems.length) throw new InputError(problems.join(" "));
  return instance;
}

function abbreviated(value) {
  if (Array.isArray(value)) return value.map(abbreviated);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key,
      key === "b64" && typeof inner === "string" && inner.length > SHOWN_B64_CHARS
        ? `${inner.slice(0, SHOWN_B64_CHARS)}... (${inner.length} characters in all)` : abbreviated(inner)]));
  }
  return value;
}

// Indented JSON with arrays of plain values on one line, so probabilities and shapes stay readable.
function pretty(value) {
  return JSON.stringify(value, null, 2)
    .replace(/\[\n\s*([^\[\]{}]*?)\n\s*\]/g, (_, inner) => `[${inner.split(/,\n\s*/).join(", ")}]`);
}

function showExchange(url, body, hasImage) {
  const text = JSON.stringify(body);
  $("endpoint").textContent = `POST ${location.origin}${url}`;
  $("request-json").textContent = pretty(abbreviated(body));
  $("curl").textContent = hasImage
    ? `curl -X POST ${location.origin}${url} -H 'Content-Type: application/json' -d @request.json\n` +
      "# request.json: the request body above, with the image's full base64"
    : `curl -X POST ${location.origin}${url} -H 'Content-Type: application/json' \\\n  -d '${text}'`;
  $("response-status").textContent = "";
  $("response-json").textContent = "(waiting)";
  $("exchange").hidden = false;
}

async function onPredict(event) {
  event.preventDefault();
  resetAnswer();
  let instance;
  try {
    instance = instanceFromForm();
  } catch (error) {
    if (!(error instanceof InputError)) throw error;
    showMessage(error.message);
    return;
  }
  const signature = $("signature").value;
  const body = { instances: [instance] };
  if (signature !== "serving_default") body.signature_name = signature;
  const text = JSON.stringify(body);
  const size = new TextEncoder().encode(text).length;
  if (state.maxBodyBytes && size > state.maxBodyBytes) {
    showMessage(`The request would be ${size} bytes; this server accepts at most ${state.maxBodyBytes} ` +
                "(its --rest_api_max_body_bytes). Choose a smaller file.");
    return;
  }
  const url = `${modelPath()}:predict`;
  showExchange(url, body, state.fields.some((field) => field.kind === "image"));
  $("predict").disabled = true;
  try {
    await send(url, text);
  } finally {
    $("predict").disabled = false;
  }
}

async function send(url, text) {
  let response;
  try {
    response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: text });
  } catch (error) {
    $("response-json").textContent = "(no answer)";
    showMessage(`Could not reach the server (${error.message}).`);
    return;
  }
  const answer = await response.text();
  let payload = null;
  try { payload = JSON.parse(answer); } catch (error) { /* shown as text below */ }
  $("response-status").textContent = `(HTTP ${response.status})`;
  $("response-json").textContent = payload === null ? answer : pretty(payload);
  if (!response.ok || payload === null) {
    const reason = payload && payload.error ? payload.error : answer.slice(0, 300);
    showMessage(`The server answered HTTP ${response.status}: ${reason}`);
    return;
  }
  showAnswer(payload);
}

function classNames(count) {
  const names = state.schema.label_names;
  if (names.length === count) return names;
  return Array.from({ length: count }, (_, i) => `class ${i}`);
}

function showAnswer(payload) {
  const rows = payload.predictions !== undefined ? payload.predictions : payload.outputs;
  const prediction = Array.isArray(rows) ? rows[0] : rows;
  const headline = $("headline");
  const chart = $("chart");
  chart.replaceChildren();
  for (const key of Object.keys(headline.dataset)) delete headline.dataset[key];
  const probabilities = prediction && prediction.probabilities;
  const value = typeof prediction === "number" ? prediction
    : Array.isArray(prediction) && prediction.flat(Infinity).length === 1 ? prediction.flat(Infinity)[0]
    : prediction && typeof prediction.predictions === "number" ? prediction.predictions : undefined;
  if (Array.isArray(probabilities) && probabilities.every((p) => typeof p === "number")) {
    const names = classNames(probabilities.length);
    const top = probabilities.indexOf(Math.max(...probabilities));
    headline.textContent = `${names[top]} (probability ${probabilities[top].toFixed(4)})`;
    Object.assign(headline.dataset, { class: names[top], probability: String(probabilities[top]) });
    chart.append(...probabilities.map((p, i) => bar(names[i], p, i === top)));
  } else if (value !== undefined) {
    headline.textContent = `Predicted value: ${value}`;
    headline.dataset.value = String(value);
  } else {
    headline.textContent = "Outputs";
    const pre = document.createElement("pre");
    pre.textContent = pretty(prediction);
    chart.append(pre);
  }
  $("answer").hidden = false;
}

function bar(name, probability, isTop) {
  const row = document.createElement("div");
  row.className = isTop ? "bar top" : "bar";
  row.dataset.class = name;
  row.dataset.probability = String(probability);
  const label = document.createElement("span");
  label.textContent = name;
  const track = document.createElement("div");
  track.className = "track";
  const fill = document.createElement("div");
  fill.className = "fill";
  fill.style.width = `${Math.max(0, Math.min(1, probability)) * 100}%`;
  track.append(fill);
  const text = document.createElement("span");
  text.className = "value";
  text.textContent = probability.toFixed(4);
  row.append(label, track, text);
  return row;
}

function guarded(action) {
  return (event) => action(event).catch((error) => showMessage(error.message));
}

$("model").addEventListener("change", guarded(onModel));
$("version").addEventListener("change", guarded(onVersion));
$("signature").addEventListener("change", () => buildForm());
$("form").addEventListener("submit", guarded(onPredict));
guarded(loadModels)();
