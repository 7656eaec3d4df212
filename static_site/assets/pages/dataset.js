// One dataset: its schema, row count, import history, rows (paged), export and delete.

import { ApiError, api, query } from "../lib/api.js";
import { announce, cell, count, field, h, replace, sleep, table, when } from "../lib/dom.js";
import { pager } from "../lib/pager.js";

const PAGE_ROWS = 25;

function constraintsText(item) {
  const c = item.constraints || {};
  return Object.entries(c).map(([key, value]) => `${key}: ${Array.isArray(value) ? value.join(", ") : value}`).join("; ");
}

export async function render(main, [datasetId], { navigate, problem, signal }) {
  const dataset = await api.get(`/datasets/${datasetId}`, { signal });
  document.title = `${dataset.name} · Loadbay`;
  const keys = new Set(Array.isArray(dataset.schema.primaryKey) ? dataset.schema.primaryKey : [dataset.schema.primaryKey].filter(Boolean));
  const schemaTable = table("Schema", ["Field", "Type", "Format", "Constraints", "Stored as"],
    dataset.schema.fields.map((item) => [
      keys.has(item.name) ? `${item.name} (key)` : item.name, item.type, item.format || "default",
      constraintsText(item), dataset.properties[item.name]]));
  const history = h("div", {}, h("p", { class: "muted" }, "Loading imports…"));
  const rows = h("div");
  const exportArea = h("div", { "aria-live": "polite" });
  const deleteArea = h("div");

  replace(main,
    h("div", { class: "page-head" },
      h("h1", {}, dataset.name),
      h("a", { class: "button primary", href: `/datasets/${dataset.id}/import`, "data-link": true }, "Import a file")),
    dataset.description ? h("p", {}, dataset.description) : null,
    h("dl", { class: "facts" },
      h("dt", {}, "Rows"), h("dd", { id: "row-count" }, count(dataset.rowCount)),
      h("dt", {}, "Status"), h("dd", {}, dataset.status === "active" && dataset.activeJob ? "an import is running" : dataset.status),
      h("dt", {}, "Created"), h("dd", {}, when(dataset.createdAt))),
    h("section", { "aria-labelledby": "schema-h" }, h("h2", { id: "schema-h" }, "Schema"), schemaTable),
    h("section", { "aria-labelledby": "imports-h" }, h("h2", { id: "imports-h" }, "Imports"), history),
    h("section", { "aria-labelledby": "rows-h" }, h("h2", { id: "rows-h" }, "Rows"), rows),
    h("section", { "aria-labelledby": "export-h" }, h("h2", { id: "export-h" }, "Export"), exportArea),
    h("section", { "aria-labelledby": "delete-h" }, h("h2", { id: "delete-h" }, "Delete"), deleteArea));

  loadHistory(dataset, history, problem, signal);
  browse(dataset, rows, problem, signal);
  exportPanel(dataset, exportArea, problem, signal);
  deletePanel(dataset, deleteArea, problem, navigate, signal);
  return undefined;
}

function loadHistory(dataset, area, problem, signal) {
  const more = h("button", { type: "button", class: "button", hidden: true }, "Show more imports");
  let cursor = null;
  let body = null;
  let busy = false;
  const row = (job) => h("tr", {}, [
    h("a", { href: `/imports/${job.id}`, "data-link": true }, when(job.createdAt)),
    job.fileName || "", job.mode, job.status.replace("_", " "),
    count(job.counts.rows), count(job.counts.inserted), count(job.counts.invalid)].map((value) => h("td", {}, value)));

  async function load() {
    if (busy) return;
    busy = true;
    try {
      const page = await api.get(`/datasets/${dataset.id}/imports${query({ cursor, limit: 20 })}`, { signal });
      if (!body) {
        if (!page.items.length) {
          replace(area, h("p", { class: "muted" }, "No imports yet."));
          return;
        }
        const wrap = table("Import history", ["Started", "File", "Mode", "Status", "Rows", "Inserted", "Invalid"], []);
        body = wrap.querySelector("tbody");
        replace(area, wrap, more);
      }
      const added = page.items.map(row);
      body.append(...added);
      cursor = page.next;
      if (!cursor && document.activeElement === more && added.length) added[0].querySelector("a").focus();
      more.hidden = !cursor;
    } catch (error) {
      if (error.name !== "AbortError") replace(area, problem(error));
    } finally {
      busy = false;
    }
  }
  more.addEventListener("click", load);
  load();
}

/** A row key as one URL path segment ("/", "?", "#" and "%" encoded). */
function keySegment(key) {
  return encodeURIComponent(key);
}

function findRow(dataset, names, problem, signal) {
  const input = h("input", { type: "text", autocomplete: "off", spellcheck: "false" });
  const result = h("div", { "aria-live": "polite", id: "found-row" });
  async function find(event) {
    event.preventDefault();
    const key = input.value;
    if (!key) {
      replace(result, h("p", { role: "status" }, "Type a key first."));
      return;
    }
    if (key === "." || key === "..") { // a browser resolves these as path segments, even encoded
      replace(result, h("p", { role: "status" }, `The key “${key}” cannot be looked up here; find it in the rows above.`));
      return;
    }
    replace(result, h("p", { class: "muted" }, "Looking…"));
    try {
      const found = await api.get(`/datasets/${dataset.id}/rows/${keySegment(key)}`, { signal });
      replace(result, h("dl", { class: "facts" },
        h("dt", {}, "Key"), h("dd", {}, found.key),
        names.flatMap((name) => [h("dt", {}, name), h("dd", {}, cell(found.values[name]))])));
    } catch (error) {
      if (error.name !== "AbortError") replace(result, problem(error));
    }
  }
  return h("form", { class: "find-row", onsubmit: find, novalidate: true },
    h("h3", {}, "Find a row by its key"),
    field("Key", input, "As shown in the Key column"),
    h("p", {}, h("button", { type: "submit", class: "button" }, "Find row")),
    result);
}

function browse(dataset, area, problem, signal) {
  const names = dataset.schema.fields.map((item) => item.name);
  const status = h("p", { class: "muted", role: "status" });
  const previous = h("button", { type: "button", class: "button" }, "Previous");
  const next = h("button", { type: "button", class: "button" }, "Next");
  const holder = h("div");
  replace(area, holder, h("div", { class: "pager" }, previous, status, next), findRow(dataset, names, problem, signal));
  pager({
    holder, previous, next, status, problem,
    load: (cursor) => api.get(`/datasets/${dataset.id}/rows${query({ cursor, limit: PAGE_ROWS })}`, { signal }),
    render: (page, position) => (page.items.length
      ? table(`Rows, page ${position + 1}`, ["Key", ...names], page.items.map((row) => [row.key, ...names.map((name) => cell(row.values[name]))]))
      : h("p", { class: "muted" }, "No rows yet.")),
  });
}

function exportPanel(dataset, area, problem, signal) {
  const button = h("button", { type: "button", class: "button" }, "Export to CSV");
  const state = h("p", { role: "status" });
  replace(area, h("p", { class: "muted" }, "Writes every row to a CSV file you can download for a few minutes."), button, state);
  button.addEventListener("click", async () => {
    button.disabled = true;
    state.textContent = "Exporting…";
    announce("Export started");
    try {
      let job = await api.post(`/datasets/${dataset.id}/exports`, {});
      let delay = 500;
      while (job.status !== "completed" && job.status !== "failed") {
        await sleep(delay, signal);
        delay = Math.min(delay * 1.5, 4000);
        job = await api.poll(`/exports/${job.id}`, { signal });
      }
      if (job.status === "failed") throw new Error(job.error || "The export failed.");
      replace(state, `Ready: ${count(job.rows)} rows. `,
        h("a", { href: job.downloadUrl, class: "button primary", download: "", id: "download-export" }, "Download CSV"));
      announce("Export ready to download");
    } catch (error) {
      if (error.name !== "AbortError") replace(state, problem(error));
    } finally {
      button.disabled = false;
    }
  });
}

function deletePanel(dataset, area, problem, navigate, signal) {
  const ask = h("button", { type: "button", class: "button danger" }, "Delete this dataset…");
  const state = h("div", { "aria-live": "polite" });
  replace(area, h("p", { class: "muted" }, "Deleting removes every row, import and error of this dataset."), ask, state);
  ask.addEventListener("click", () => {
    const confirm = h("button", { type: "button", class: "button danger" }, `Yes, delete “${dataset.name}”`);
    const keep = h("button", { type: "button", class: "button" }, "Keep it");
    replace(state, h("p", {}, "This cannot be undone."), confirm, " ", keep);
    confirm.focus();
    keep.addEventListener("click", () => { replace(state); ask.focus(); });
    confirm.addEventListener("click", async () => {
      confirm.disabled = keep.disabled = true;
      try {
        await api.delete(`/datasets/${dataset.id}`);
        replace(state, h("p", { role: "status" }, "Deleting…"));
        let delay = 700;
        for (;;) {
          await sleep(delay, signal);
          delay = Math.min(delay * 1.5, 5000);
          try {
            await api.poll(`/datasets/${dataset.id}`, { signal });
          } catch (error) {
            if (error instanceof ApiError && error.status === 404) break;
            throw error;
          }
        }
        announce("Dataset deleted");
        navigate("/datasets", { replace: true });
      } catch (error) {
        if (error.name !== "AbortError") replace(state, problem(error));
      }
    });
  });
}
