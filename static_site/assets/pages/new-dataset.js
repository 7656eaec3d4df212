// Create a dataset: write its Table Schema field by field, or take the schema Loadbay infers from a file.

import { api } from "../lib/api.js";
import { announce, bytes, field, h, replace, sleep } from "../lib/dom.js";
import { UploadCancelled, uploadFile } from "../lib/upload.js";

const TYPES = ["string", "integer", "number", "boolean", "date", "datetime", "time", "year"];
const NUMERIC = new Set(["integer", "number", "year"]);

function fieldEditor(initial = {}, onRemove) {
  const c = initial.constraints || {};
  const input = (value, props = {}) => h("input", { type: "text", value: value ?? "", ...props });
  const parts = {
    name: input(initial.name, { required: true, autocomplete: "off", "data-part": "name" }),
    type: h("select", { "data-part": "type" }, TYPES.map((type) => h("option", { value: type, selected: type === (initial.type || "string") }, type))),
    format: input(initial.format && initial.format !== "default" ? initial.format : "", { "data-part": "format" }),
    required: h("input", { type: "checkbox", checked: !!c.required, "data-part": "required" }),
    unique: h("input", { type: "checkbox", checked: !!c.unique, "data-part": "unique" }),
    key: h("input", { type: "checkbox", checked: !!initial.primaryKey, "data-part": "key" }),
    minimum: input(c.minimum, { "data-part": "minimum" }),
    maximum: input(c.maximum, { "data-part": "maximum" }),
    minLength: input(c.minLength, { inputmode: "numeric", "data-part": "minLength" }),
    maxLength: input(c.maxLength, { inputmode: "numeric", "data-part": "maxLength" }),
    pattern: input(c.pattern, { "data-part": "pattern" }),
    enum: input(Array.isArray(c.enum) ? c.enum.join(", ") : "", { "data-part": "enum" }),
  };
  const check = (label, control) => h("label", { class: "check" }, control, " ", label);
  const box = h("fieldset", { class: "schema-field" },
    h("legend", {}, initial.name ? `Field “${initial.name}”` : "New field"),
    h("div", { class: "row" },
      field("Name", parts.name),
      field("Type", parts.type),
      field("Format", parts.format, "email, uri or uuid for strings; a pattern such as %d/%m/%Y for dates")),
    h("div", { class: "row checks" }, check("Required", parts.required), check("Unique", parts.unique), check("Primary key", parts.key)),
    h("details", {},
      h("summary", {}, "Constraints"),
      h("div", { class: "row" },
        field("Minimum", parts.minimum), field("Maximum", parts.maximum),
        field("Min length", parts.minLength), field("Max length", parts.maxLength)),
      h("div", { class: "row" },
        field("Pattern", parts.pattern, "A regular expression the whole value must match"),
        field("Allowed values", parts.enum, "Separated by commas"))),
    h("button", { type: "button", class: "button subtle", onclick: () => { box.remove(); onRemove(); } }, "Remove this field"));
  parts.name.addEventListener("input", () => {
    box.querySelector("legend").textContent = parts.name.value ? `Field “${parts.name.value}”` : "New field";
  });
  box.read = () => describe(parts);
  return box;
}

function describe(parts) {
  const type = parts.type.value;
  const typed = (text) => (NUMERIC.has(type) && text.trim() !== "" && !Number.isNaN(Number(text)) ? Number(text) : text.trim());
  const out = { name: parts.name.value.trim(), type };
  if (parts.format.value.trim()) out.format = parts.format.value.trim();
  const constraints = {};
  if (parts.required.checked) constraints.required = true;
  if (parts.unique.checked) constraints.unique = true;
  for (const key of ["minimum", "maximum"]) if (parts[key].value.trim()) constraints[key] = typed(parts[key].value);
  for (const key of ["minLength", "maxLength"]) if (parts[key].value.trim()) constraints[key] = Number(parts[key].value);
  if (parts.pattern.value) constraints.pattern = parts.pattern.value;
  if (parts.enum.value.trim()) constraints.enum = parts.enum.value.split(",").map((item) => typed(item));
  if (Object.keys(constraints).length) out.constraints = constraints;
  return { field: out, key: parts.key.checked };
}

export async function render(main, _params, { navigate, problem, signal }) {
  document.title = "New dataset · Loadbay";
  const errors = h("div", { "aria-live": "polite" });
  const name = h("input", { type: "text", required: true, maxlength: 200, autocomplete: "off" });
  const description = h("textarea", { rows: 2, maxlength: 2000 });
  const fields = h("div", { class: "schema-fields" });
  const add = (initial) => fields.append(fieldEditor(initial, () => announce("Field removed")));
  add({ name: "id", type: "integer", primaryKey: true });

  async function createFromSchema(event) {
    event.preventDefault();
    const read = [...fields.children].map((box) => box.read());
    const schema = { fields: read.map((item) => item.field) };
    const keys = read.filter((item) => item.key).map((item) => item.field.name);
    if (keys.length) schema.primaryKey = keys.length === 1 ? keys[0] : keys;
    await create({ name: name.value, description: description.value || undefined, schema });
  }

  // `where`: the element that shows a refusal, next to the button that was pressed.
  async function create(body, where = errors) {
    replace(where);
    try {
      const dataset = await api.post("/datasets", body);
      announce(`Dataset ${dataset.name} created`);
      navigate(`/datasets/${dataset.id}`);
    } catch (error) {
      replace(where, problem(error));
      where.querySelector("[role=alert]")?.focus?.();  // keyboard users land on what to fix
    }
  }

  const fromFile = fromFilePanel({ name, description, create, problem, signal });
  replace(main,
    h("h1", {}, "New dataset"),
    h("form", { class: "stack", novalidate: true, onsubmit: createFromSchema },
      field("Name", name),
      field("Description (optional)", description),
      h("h2", {}, "Schema"),
      h("p", { class: "muted" }, "Describe each column as a Table Schema field, or take the schema from a file below."),
      fields,
      h("p", {}, h("button", { type: "button", class: "button", onclick: () => { add({}); fields.lastChild.querySelector("input").focus(); } }, "Add a field")),
      errors,
      h("p", {}, h("button", { type: "submit", class: "button primary" }, "Create dataset"))),
    fromFile);
}

function fromFilePanel({ name, description, create, problem, signal }) {
  const picker = h("input", { type: "file", accept: ".csv,text/csv,text/plain" });
  const progress = h("progress", { max: 100, value: 0, hidden: true, "aria-label": "Upload progress" });
  const state = h("p", { role: "status", "aria-live": "polite" });
  const result = h("div");
  const refused = h("div", { "aria-live": "polite" });
  const panel = h("section", { class: "card", "aria-labelledby": "from-file" },
    h("h2", { id: "from-file" }, "Or: from a file"),
    h("p", { class: "muted" }, "Loadbay reads the file, infers each column's type, and makes the schema from it."),
    field("CSV file", picker), progress, state, result);
  picker.addEventListener("change", async () => {
    const file = picker.files[0];
    if (!file) return;
    replace(result);
    replace(refused);
    progress.hidden = false;
    try {
      state.textContent = `Uploading ${file.name}…`;
      const uploadId = await uploadFile(file, {
        signal,
        onProgress: (sent, total) => { progress.value = total ? Math.round((100 * sent) / total) : 100; },
      });
      state.textContent = "Reading the file…";
      // Polls until the profile is ready, backing off; stops when the visitor leaves the page.
      let upload = await api.poll(`/uploads/${uploadId}`, { signal });
      let delay = 400;
      while (upload.status !== "profiled" && upload.status !== "failed") {
        await sleep(delay, signal);
        delay = Math.min(delay * 1.5, 3000);
        upload = await api.poll(`/uploads/${uploadId}`, { signal });
      }
      if (upload.status === "failed") throw new Error(upload.error || "The file could not be read.");
      state.textContent = `${file.name}: ${upload.rowCount.toLocaleString("en")} rows, ${bytes(file.size)}.`;
      const key = h("select", {}, h("option", { value: "" }, "— none —"),
        upload.columns.map((column) => h("option", { value: column.name }, column.name)));
      const types = h("ul", {}, upload.inferredSchema.fields.map((item) => h("li", {}, `${item.name}: ${item.type}${item.format ? ` (${item.format})` : ""}`)));
      replace(result, h("h3", {}, "Inferred fields"), types, field("Primary key (optional)", key),
        h("button", {
          type: "button", class: "button primary", onclick: () => create({
            name: name.value || file.name.replace(/\.[^.]+$/, ""),
            description: description.value || undefined,
            fromUpload: uploadId,
            primaryKey: key.value || undefined,
          }, refused),
        }, "Create dataset from this file"), refused);
    } catch (error) {
      if (error instanceof UploadCancelled || error.name === "AbortError" || signal.aborted) return;
      replace(result, problem(error));
      state.textContent = "";
    } finally {
      progress.hidden = true;
    }
  });
  return panel;
}
