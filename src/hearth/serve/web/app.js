// hearth-server's page: ask a bank with a streamed, cited answer; read a cited passage; upload
// documents into a bank; generate an image when a FLUX model is loaded. Plain browser JavaScript,
// no framework and nothing fetched from anywhere but this server. All text from the server or the
// documents goes into the page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  key: "",
  models: [],        // /v1/models data
  banks: [],         // /v1/banks data
  messages: [],      // the conversation so far, as the API takes it
  controller: null,  // AbortController of the answer being streamed
};

// An error answered by the server in OpenAI's shape {"error": {"message", "type", "code"}}, or a
// failure to reach it. status 0: no HTTP status (not reached, or an error inside a stream).
class ApiError extends Error {
  constructor(status, message, type) {
    super(message);
    this.status = status;
    this.type = type || "";
  }
  // "HTTP 404 · invalid_request_error": where the message came from.
  origin() {
    return [this.status ? `HTTP ${this.status}` : "", this.type].filter(Boolean).join(" \u00b7 ");
  }
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.key) h["Authorization"] = `Bearer ${state.key}`;
  return h;
}

async function errorOf(response) {
  let message = response.statusText || "request failed";
  let type = "";
  try {
    const body = await response.json();
    if (body && body.error) {
      message = body.error.message || message;
      type = body.error.type || body.error.code || "";
    }
  } catch (_) {
    // Not JSON: the status line is all there is.
  }
  if (response.status === 401) showKeyPanel();
  return new ApiError(response.status, message, type);
}

async function request(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, `The server cannot be reached (${e.message}).`);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function getJson(path) {
  const response = await request(path, { headers: headers() });
  return response.json();
}

async function postJson(path, body, signal) {
  return request(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(body),
    signal,
  });
}

function showError(id, error) {
  const box = $(id);
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.replaceChildren(String(error.message || error));
  if (error instanceof ApiError && error.origin()) {
    const origin = document.createElement("span");
    origin.className = "error-origin";
    origin.textContent = error.origin();
    box.append(" ", origin);
  }
  box.hidden = false;
}

function showKeyPanel() {
  $("key-panel").hidden = false;
  $("server-state").textContent = "this server needs an API key";
}

// ---- models and banks -------------------------------------------------------------------------

// /v1/models lists each loaded model with its "kind": chat, embedding, rerank or image (FLUX).
const isImageModel = (m) => m.kind === "image";

function fillSelect(select, items, label, empty) {
  const previous = select.value;
  select.replaceChildren();
  if (items.length === 0) {
    const option = document.createElement("option");
    option.value = "";
    option.textContent = empty;
    select.append(option);
    select.disabled = true;
    return;
  }
  for (const item of items) {
    const option = document.createElement("option");
    option.value = item.value;
    option.textContent = label(item);
    select.append(option);
  }
  select.disabled = false;
  if (items.some((i) => i.value === previous)) select.value = previous;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function bankLabel(b) {
  return `${b.name} (${plural(b.documents, "document")}, ${plural(b.chunks, "passage")})`;
}

async function loadModels() {
  const body = await getJson("/v1/models");
  state.models = body.data || [];
  const chat = state.models.filter((m) => m.kind === "chat");
  fillSelect($("model"), chat.map((m) => ({ value: m.id })), (m) => m.value,
             "no chat model loaded");
  // One chat model answers whatever a request names: no choice to offer (the header names it).
  $("model-field").hidden = chat.length === 1;
  $("image-panel").hidden = !state.models.some(isImageModel);
}

async function loadBanks() {
  const body = await getJson("/v1/banks");
  state.banks = body.data || [];
  const items = state.banks.map((b) => Object.assign({ value: b.name }, b));
  fillSelect($("bank"), items, bankLabel, "no bank configured");
  fillSelect($("upload-bank"), items.filter((b) => b.writable), bankLabel,
             "no writable bank");
  $("upload").disabled = $("upload-bank").disabled;
}

// Lists the models and banks; while the server loads its models (503) it says so and retries.
async function connect() {
  try {
    await Promise.all([loadModels(), loadBanks()]);
    $("key-panel").hidden = true;
    const n = state.banks.length;
    const image = state.models.find(isImageModel);
    $("server-state").textContent =
        `connected: ${n} bank${n === 1 ? "" : "s"}, model ${$("model").value || "none"}` +
        (image ? `, images ${image.id}` : "");
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    const origin = e instanceof ApiError ? e.origin() : "";
    $("server-state").textContent = `${e.message || e}${origin ? ` (${origin})` : ""}`;
    if (e instanceof ApiError && e.status === 503) setTimeout(connect, 1000);
  }
}

// ---- answers and citations --------------------------------------------------------------------

// Appends text to parent with each number of a citation ([1], [1, 2], [2-3], [1][4]) that names
// one of the sources turned into a link opening that source; the text itself is unchanged.
function appendCited(parent, text, sources) {
  const pattern = /\[\d+(?:\s*[,;\u2013-]\s*\d+)*\]/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    parent.append(text.slice(last, match.index));
    let at = 0;
    for (const number of match[0].matchAll(/\d+/g)) {
      const n = Number(number[0]);
      if (!sources.has(n)) continue;
      parent.append(match[0].slice(at, number.index), citationLink(n, sources.get(n)));
      at = number.index + number[0].length;
    }
    parent.append(match[0].slice(at));
    last = match.index + match[0].length;
  }
  parent.append(text.slice(last));
}

function pagesOf(c) {
  if (!c.page_first) return "";
  return c.page_last && c.page_last !== c.page_first ? `${c.page_first}\u2013${c.page_last}`
                                                     : String(c.page_first);
}

function citationLink(n, citation) {
  const a = document.createElement("a");
  a.href = `#source-${n}`;
  a.className = "cite";
  a.textContent = String(n);
  const where = [citation.file, pagesOf(citation) && `page ${pagesOf(citation)}`]
                    .filter(Boolean).join(", ");
  a.title = where;
  a.setAttribute("aria-label", `source ${n}: ${where}`);
  a.addEventListener("click", (event) => {
    event.preventDefault();
    openPassage(n, citation);
  });
  return a;
}

function openPassage(n, c) {
  $("passage-title").textContent = `Source [${n}]`;
  $("passage-file").textContent = c.file || "";
  $("passage-file").title = c.path || "";
  for (const [field, value] of [["page", pagesOf(c)], ["heading", c.heading || ""]]) {
    $(`passage-${field}`).textContent = value;
    $(`passage-${field}`).hidden = value === "";
    $(`passage-${field}-label`).hidden = value === "";
  }
  // The chunk keeps its file's line breaks: blank lines part paragraphs, single ones are wrapping.
  $("passage-text").replaceChildren(...(c.text || "").split(/\n\s*\n/).map((para) => {
    const p = document.createElement("p");
    p.textContent = para.replace(/\s*\n\s*/g, " ").trim();
    return p;
  }));
  const panel = $("passage-panel");
  panel.hidden = false;
  panel.focus();
  panel.scrollIntoView({ block: "nearest" });
}

function renderAnswer(turn, text, citations) {
  const sources = new Map((citations || []).map((c) => [c.number, c]));
  turn.answer.replaceChildren();
  appendCited(turn.answer, text, sources);
  turn.sources.replaceChildren();
  if (!citations || citations.length === 0) return;
  const heading = document.createElement("p");
  heading.className = "sources-title";
  heading.textContent = citations.some((c) => c.cited) ? "Sources"
                                                       : "Sources (the answer cites none of them)";
  turn.sources.append(heading);
  const list = document.createElement("ul");
  for (const c of citations) {
    const li = document.createElement("li");
    li.append("[", citationLink(c.number, c), "] ");
    const where = [c.file, pagesOf(c) && `p. ${pagesOf(c)}`, c.heading].filter(Boolean);
    li.append(where.join(" \u00b7 "));
    if (!c.cited) {
      li.classList.add("uncited");
      li.append(" (not cited)");
    }
    list.append(li);
  }
  turn.sources.append(list);
}

function addTurn(question) {
  const li = document.createElement("li");
  li.className = "turn";
  const q = document.createElement("p");
  q.className = "question";
  q.textContent = question;
  const answer = document.createElement("div");
  answer.className = "answer";
  answer.setAttribute("aria-busy", "true");
  const status = document.createElement("p");
  status.className = "turn-status";
  const sources = document.createElement("div");
  sources.className = "sources";
  li.append(q, answer, status, sources);
  $("conversation").append(li);
  li.scrollIntoView({ block: "nearest" });
  return { li, answer, status, sources };
}

// Reads a server-sent event stream, calling onData with each parsed `data:` payload until
// [DONE].
async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = event.split(/\r?\n/)
                       .filter((line) => line.startsWith("data:"))
                       .map((line) => line.slice(5).replace(/^ /, ""))
                       .join("\n");
      if (data === "") continue;
      if (data === "[DONE]") return;
      onData(JSON.parse(data));
    }
  }
  throw new ApiError(0, "The answer stream ended early.");
}

async function ask(question) {
  const bank = $("bank").value;
  const turn = addTurn(question);
  const messages = state.messages.concat([{ role: "user", content: question }]);
  const body = { model: $("model").value, messages, stream: true };
  if (bank) body.bank = bank;
  state.controller = new AbortController();
  $("send").disabled = true;
  $("stop").hidden = false;
  showError("ask-error", null);
  turn.status.textContent = bank ? `searching ${bank}\u2026` : "thinking\u2026";
  let text = "";
  let citations = [];
  let finish = "";
  try {
    const response = await postJson("/v1/chat/completions", body, state.controller.signal);
    await readEvents(response, (chunk) => {
      if (chunk.error) throw new ApiError(0, chunk.error.message, chunk.error.type);
      if (Array.isArray(chunk.citations)) citations = chunk.citations;
      const choice = (chunk.choices || [])[0];
      if (!choice) return;
      if (choice.delta && choice.delta.content) {
        text += choice.delta.content;
        turn.answer.textContent = text;
        turn.status.textContent = "answering\u2026";
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    });
    renderAnswer(turn, text, citations);
    turn.status.textContent = finish === "length" ? "the answer reached its token limit" : "";
    state.messages = messages.concat([{ role: "assistant", content: text }]);
  } catch (e) {
    if (e.name === "AbortError") {
      renderAnswer(turn, text, citations);
      turn.status.textContent = "stopped";
    } else {
      turn.status.textContent = "";
      if (text === "") turn.li.remove();
      showError("ask-error", e);
    }
  } finally {
    turn.answer.removeAttribute("aria-busy");
    state.controller = null;
    $("send").disabled = false;
    $("stop").hidden = true;
  }
}

// ---- uploads ----------------------------------------------------------------------------------

function addUploadRow(names) {
  const li = document.createElement("li");
  const label = document.createElement("span");
  label.className = "upload-name";
  label.textContent = names.join(", ");
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.value = 0;
  bar.setAttribute("aria-label", `progress of ${names.join(", ")}`);
  const status = document.createElement("span");
  status.className = "upload-status";
  li.append(label, bar, status);
  $("uploads").append(li);
  return { li, bar, status };
}

function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ""));
    reader.onerror = () => reject(new ApiError(0, `${file.name} cannot be read`));
    reader.readAsDataURL(file);
  });
}

// POSTs the body with its upload progress (fetch reports none, XMLHttpRequest does); resolves
// with the parsed JSON answer.
function postWithProgress(url, body, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    for (const [k, v] of Object.entries(headers({ "Content-Type": "application/json" }))) {
      xhr.setRequestHeader(k, v);
    }
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    };
    xhr.onerror = () => reject(new ApiError(0, "The server cannot be reached."));
    xhr.onload = () => {
      let answer = null;
      try {
        answer = JSON.parse(xhr.responseText);
      } catch (_) {
        // Not JSON: the status says what happened.
      }
      if (xhr.status >= 200 && xhr.status < 300 && answer) return resolve(answer);
      const err = answer && answer.error ? answer.error : {};
      if (xhr.status === 401) showKeyPanel();
      reject(new ApiError(xhr.status, err.message || xhr.statusText || "upload failed",
                          err.type || err.code));
    };
    xhr.send(body);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Follows an upload on its status route until the ingest is done or has failed.
async function followUpload(bank, job, row) {
  const url = `/v1/banks/${encodeURIComponent(bank)}/uploads/${encodeURIComponent(job.id)}`;
  for (;;) {
    const p = job.progress || {};
    if (p.bytes_total > 0) row.bar.value = p.bytes_done / p.bytes_total;
    if (job.status === "queued") row.status.textContent = "waiting to ingest";
    if (job.status === "running") {
      row.status.textContent =
          `ingesting ${p.files_done || 0}/${p.files_total || job.files.length}` +
          (p.current ? `: ${p.current}` : "");
    }
    if (job.status === "failed") throw new ApiError(0, job.error || "the ingest failed");
    if (job.status === "done") return job;
    await sleep(250);
    job = await getJson(url);
  }
}

function reportText(r) {
  const parts = [`${r.added} added`];
  if (r.updated) parts.push(`${r.updated} updated`);
  if (r.unchanged) parts.push(`${r.unchanged} unchanged`);
  if (r.failed) parts.push(`${r.failed} failed`);
  if (r.skipped) parts.push(`${r.skipped} skipped`);
  return `${parts.join(", ")}; ${r.chunks} passage${r.chunks === 1 ? "" : "s"}`;
}

async function upload(bank, files) {
  showError("upload-error", null);
  $("upload").disabled = true;
  const row = addUploadRow(files.map((f) => f.name));
  try {
    row.status.textContent = "reading";
    const documents = [];
    for (const file of files) {
      documents.push({ name: file.name, content_base64: await base64Of(file) });
    }
    row.status.textContent = "uploading";
    const job = await postWithProgress(
        `/v1/banks/${encodeURIComponent(bank)}/documents`, JSON.stringify({ documents }),
        (f) => {
          row.bar.value = f;
          row.status.textContent = `uploading ${Math.round(f * 100)}%`;
        });
    row.bar.value = 0;
    const done = await followUpload(bank, job, row);
    row.bar.value = 1;
    row.status.textContent = reportText(done.report);
    row.li.classList.add(done.report.failed ? "failed" : "done");
    if (done.report.failed) {
      showError("upload-error", new ApiError(0, done.messages.join("\n") || "a file failed"));
    }
    await loadBanks();
  } catch (e) {
    row.status.textContent = "failed";
    row.li.classList.add("failed");
    showError("upload-error", e);
  } finally {
    $("upload").disabled = $("upload-bank").disabled;
  }
}

// ---- images -----------------------------------------------------------------------------------

async function generateImage(prompt, size) {
  const model = state.models.find(isImageModel);
  showError("image-error", null);
  $("image-go").disabled = true;
  $("image-state").textContent = "generating\u2026";
  const started = performance.now();
  try {
    const response = await postJson(
        "/v1/images/generations",
        { model: model.id, prompt, n: 1, size, response_format: "b64_json" });
    const body = await response.json();
    // The server answers once the image is made; a failure while it ran comes as an error object
    // in that answer.
    if (body.error) throw new ApiError(0, body.error.message, body.error.type || body.error.code);
    for (const item of body.data || []) {
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      img.src = `data:image/png;base64,${item.b64_json}`;
      img.alt = prompt;
      const caption = document.createElement("figcaption");
      caption.textContent = item.seed === undefined ? prompt
                                                    : `${prompt} (${body.size}, seed ${item.seed})`;
      figure.append(img, caption);
      $("images").prepend(figure);
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    $("image-state").textContent = `done in ${seconds} s`;
  } catch (e) {
    $("image-state").textContent = "";
    showError("image-error", e);
  } finally {
    $("image-go").disabled = false;
  }
}

// ---- wiring -----------------------------------------------------------------------------------

$("ask-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (question === "" || state.controller) return;
  $("question").value = "";
  ask(question);
});

// Enter sends the question (and the image prompt); Shift+Enter is a new line.
for (const [field, form] of [["question", "ask-form"], ["image-prompt", "image-form"]]) {
  $(field).addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $(form).requestSubmit();
    }
  });
}

$("stop").addEventListener("click", () => {
  if (state.controller) state.controller.abort();
});

$("clear").addEventListener("click", () => {
  if (state.controller) state.controller.abort();
  state.messages = [];
  $("conversation").replaceChildren();
  $("passage-panel").hidden = true;
  showError("ask-error", null);
  $("question").focus();
});

$("passage-close").addEventListener("click", () => {
  $("passage-panel").hidden = true;
  $("question").focus();
});

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !$("passage-panel").hidden) {
    $("passage-panel").hidden = true;
    $("question").focus();
  }
});

$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const bank = $("upload-bank").value;
  const files = Array.from($("files").files);
  if (!bank || files.length === 0) return;
  upload(bank, files).then(() => {
    $("files").value = "";
  });
});

$("image-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = $("image-prompt").value.trim();
  if (prompt) generateImage(prompt, $("image-size").value);
});

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.key = $("api-key").value.trim();
  connect();
});

connect();
