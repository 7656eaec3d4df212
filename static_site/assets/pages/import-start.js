// The import wizard's first steps: pick a file and upload it, then see its profile and map its columns.

import { api } from "../lib/api.js";
import { announce, bytes, cell, count, field, h, replace, sleep, table } from "../lib/dom.js";
import { UploadCancelled, uploadFile } from "../lib/upload.js";

const DELIMITERS = { ",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe", "\u001f": "none (one column)" };

export async function render(main, [datasetId, uploadId], context) {
  const dataset = await api.get(`/datasets/${datasetId}`, { signal: context.signal });
  return uploadId ? mapStep(main, dataset, uploadId, context) : pickStep(main, dataset, context);
}

function steps(current) {
  const names = ["Upload", "Map columns", "Validate", "Review", "Done"];
  return h("ol", { class: "steps", "aria-label": "Import steps" },
    names.map((name, index) => h("li", { "aria-current": index === current ? "step" : null, class: index < current ? "done" : null }, name)));
}

function pickStep(main, dataset, { navigate, problem }) {
  document.title = `Import into ${dataset.name} · Loadbay`;
  const picker = h("input", { type: "file", id: "file", accept: ".csv,.tsv,.txt,text/csv,text/plain", class: "visually-hidden" });
  const zone = h("label", { for: "file", class: "dropzone", tabindex: "-1" },
    h("strong", {}, "Choose a CSV file"), h("span", {}, " or drop it here"));
  const bar = h("progress", { max: 100, value: 0, id: "upload-progress", "aria-label": "Upload progress" });
  const percent = h("span", { class: "percent" }, "0%");
  const cancel = h("button", { type: "button", class: "button" }, "Cancel upload");
  const progress = h("div", { class: "upload-progress", hidden: true }, h("p", { id: "upload-name" }), bar, " ", percent, " ", cancel);
  const messages = h("div", { "aria-live": "polite" });
  let controller = null;

  async function start(file) {
    if (!file) return;
    controller = new AbortController();
    replace(messages);
    progress.hidden = false;
    zone.hidden = true;
    progress.querySelector("#upload-name").textContent = `Uploading ${file.name} (${bytes(file.size)})`;
    announce(`Uploading ${file.name}`);
    try {
      const uploadId = await uploadFile(file, {
        signal: controller.signal,
        onProgress: (sent, total) => {
          const value = total ? Math.floor((100 * sent) / total) : 100;
          bar.value = value;
          percent.textContent = `${value}%`;
        },
      });
      announce("Upload finished; reading the file");
      navigate(`/datasets/${dataset.id}/import/${uploadId}`);
    } catch (error) {
      progress.hidden = true;
      zone.hidden = false;
      replace(messages, error instanceof UploadCancelled ? h("p", { role: "status" }, "Upload cancelled.") : problem(error));
      announce(error instanceof UploadCancelled ? "Upload cancelled" : "Upload failed");
    }
  }

  cancel.addEventListener("click", () => controller && controller.abort());
  picker.addEventListener("change", () => start(picker.files[0]));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    start(event.dataTransfer.files[0]);
  });
  replace(main,
    h("h1", {}, `Import into ${dataset.name}`),
    steps(0),
    h("p", {}, "The file goes straight to storage; nothing is changed until you start the import."),
    picker, zone, progress, messages);
  return () => controller && controller.abort();
}

export function normalise(name) {
  return name.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase().replace(/[ _\-.\t]/g, "");
}

export function autoMap(fields, columns) {
  const taken = new Set();
  const result = {};
  for (const item of fields) {
    if (columns.includes(item.name) && !taken.has(item.name)) {
      result[item.name] = item.name;
      taken.add(item.name);
    }
  }
  for (const item of fields) {
    if (result[item.name]) continue;
    const matches = columns.filter((column) => !taken.has(column) && normalise(column) === normalise(item.name));
    result[item.name] = matches.length === 1 ? matches[0] : null;
    if (matches.length === 1) taken.add(matches[0]);
  }
  return result;
}

async function mapStep(main, dataset, uploadId, { navigate, problem, signal }) {
  document.title = `Map columns · ${dataset.name} · Loadbay`;
  const waiting = h("p", { role: "status" }, "Reading the file…");
  replace(main, h("h1", {}, `Import into ${dataset.name}`), steps(1), waiting);
  let upload = await api.get(`/uploads/${uploadId}`, { signal });
  let delay = 400;
  while (upload.status !== "profiled" && upload.status !== "failed") {
    await sleep(delay, signal);
    delay = Math.min(delay * 1.5, 3000);
    upload = await api.poll(`/uploads/${uploadId}`, { signal });
  }
  if (upload.status === "failed") {
    replace(main, h("h1", {}, `Import into ${dataset.name}`), steps(0),
      problem(new Error(upload.error || "The file could not be read.")),
      h("a", { class: "button", href: `/datasets/${dataset.id}/import`, "data-link": true }, "Choose another file"));
    return undefined;
  }
  const columns = upload.columns.map((column) => column.name);
  const schemaFields = dataset.schema.fields;
  const keys = new Set(Array.isArray(dataset.schema.primaryKey) ? dataset.schema.primaryKey : [dataset.schema.primaryKey].filter(Boolean));
  const needed = (item) => keys.has(item.name) || (item.constraints && item.constraints.required);
  const initial = autoMap(schemaFields, columns);
  const selects = {};
  const rows = schemaFields.map((item) => {
    const select = h("select", { "aria-label": `Column for ${item.name}`, "data-field": item.name },
      h("option", { value: "" }, "— not mapped —"),
      columns.map((column) => h("option", { value: column, selected: initial[item.name] === column }, column)));
    selects[item.name] = select;
    select.addEventListener("change", check);
    return [h("span", {}, item.name, needed(item) ? h("span", { class: "tag" }, "required") : null), item.type, select];
  });
  const warnings = h("div", { "aria-live": "polite", id: "mapping-warnings" });
  const mode = h("select", {},
    h("option", { value: "insert" }, "insert: add new rows (an existing key is an error)"),
    h("option", { value: "upsert", disabled: keys.size === 0 }, "upsert: add new rows, update existing ones"),
    h("option", { value: "replace" }, "replace: the dataset becomes this file"));
  const autoApply = h("input", { type: "checkbox" });
  const start = h("button", { type: "submit", class: "button primary" }, "Start import");
  const errors = h("div", { "aria-live": "polite" });

  function check() {
    const missing = schemaFields.filter((item) => needed(item) && !selects[item.name].value).map((item) => item.name);
    const chosen = Object.values(selects).map((select) => select.value).filter(Boolean);
    const twice = [...new Set(chosen.filter((value, index) => chosen.indexOf(value) !== index))];
    const problems = [
      ...missing.map((name) => `“${name}” is required but no column feeds it.`),
      ...twice.map((column) => `Column “${column}” feeds more than one field.`),
    ];
    replace(warnings, problems.length ? h("div", { class: "warning", role: "alert" }, h("strong", {}, "Fix the mapping first"), h("ul", {}, problems.map((text) => h("li", {}, text)))) : null);
    start.disabled = problems.length > 0;
    return problems.length === 0;
  }

  async function submit(event) {
    event.preventDefault();
    if (!check()) return;
    start.disabled = true;
    replace(errors);
    const mapping = Object.fromEntries(Object.entries(selects).map(([name, select]) => [name, select.value || null]));
    try {
      const job = await api.post(`/datasets/${dataset.id}/imports`, { uploadId, mode: mode.value, autoApply: autoApply.checked, mapping });
      announce("Import started");
      navigate(`/imports/${job.id}`);
    } catch (error) {
      replace(errors, problem(error));
      start.disabled = false;
    }
  }

  const dialect = upload.dialect || {};
  const preview = upload.preview || [];
  replace(main,
    h("h1", {}, `Import into ${dataset.name}`),
    steps(1),
    h("section", { "aria-labelledby": "profile-h" },
      h("h2", { id: "profile-h" }, `The file: ${upload.fileName}`),
      h("dl", { class: "facts" },
        h("dt", {}, "Rows"), h("dd", {}, count(upload.rowCount)),
        h("dt", {}, "Size"), h("dd", {}, bytes(upload.size)),
        h("dt", {}, "Encoding"), h("dd", {}, upload.encoding),
        h("dt", {}, "Delimiter"), h("dd", {}, DELIMITERS[dialect.delimiter] || dialect.delimiter),
        h("dt", {}, "Header row"), h("dd", {}, dialect.header ? "yes" : "no"),
        h("dt", {}, "Types inferred from"), h("dd", {}, `${count(upload.sampledRows)} rows`)),
      table("Preview", columns, preview.slice(0, 10).map((row) => columns.map((_, index) => cell(row[index])))),
      table("Columns", ["Column", "Type", "Empty", "Distinct", "Min", "Max"],
        upload.columns.map((column) => [column.name, column.type, count(column.nullCount), count(column.distinct), cell(column.min), cell(column.max)]))),
    h("form", { onsubmit: submit, novalidate: true },
      h("section", { "aria-labelledby": "mapping-h" },
        h("h2", { id: "mapping-h" }, "Map columns to fields"),
        h("p", { class: "muted" }, "Columns are matched to fields by name; change any match below. Columns that feed no field are ignored."),
        table("Mapping", ["Field", "Type", "Column"], rows), warnings),
      h("section", { "aria-labelledby": "options-h" },
        h("h2", { id: "options-h" }, "Options"),
        field("Mode", mode),
        h("label", { class: "check" }, autoApply, " Apply at once when no row is invalid (skip the review)")),
      errors,
      h("p", {}, start)));
  check();
  return undefined;
}
