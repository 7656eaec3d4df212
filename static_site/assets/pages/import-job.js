// An import after it started: live progress, then the review (counts, errors, approve / reject), then the result.

import { api, query } from "../lib/api.js";
import { announce, cell, count, h, replace, sleep, table, when } from "../lib/dom.js";
import { pager } from "../lib/pager.js";

const RUNNING = new Set(["queued", "validating", "applying"]);
const PHASES = {
  queued: "Waiting to start",
  validating: "Validating rows",
  awaiting_review: "Waiting for your review",
  applying: "Writing rows to the dataset",
  completed: "Completed",
  failed: "Failed",
  rejected: "Rejected",
  cancelled: "Cancelled",
  expired: "Expired: the review was not decided in time",
};
const RULES = {
  type: "wrong type or format",
  required: "missing value",
  minimum: "below the minimum",
  maximum: "above the maximum",
  exclusiveMinimum: "not above the minimum",
  exclusiveMaximum: "not below the maximum",
  minLength: "too short",
  maxLength: "too long",
  pattern: "does not match the pattern",
  enum: "not an allowed value",
  primaryKey: "duplicate key",
  unique: "duplicate value",
  missingCell: "row too short",
  extraCell: "row too long",
  blankRow: "blank row",
  keyExists: "key already in the dataset",
  rowTooLarge: "row too large",
};
const ERRORS_PAGE = 20;

function stepIndex(status) {
  if (RUNNING.has(status) && status !== "applying") return 2;
  if (status === "awaiting_review") return 3;
  return status === "applying" ? 3 : 4;
}

function steps(status) {
  const names = ["Upload", "Map columns", "Validate", "Review", "Done"];
  const current = stepIndex(status);
  return h("ol", { class: "steps", "aria-label": "Import steps" },
    names.map((name, index) => h("li", { "aria-current": index === current ? "step" : null, class: index < current ? "done" : null }, name)));
}

export async function render(main, [jobId], { problem, signal }) {
  let job = await api.get(`/imports/${jobId}`, { signal });
  const dataset = await api.get(`/datasets/${job.datasetId}`, { signal });
  document.title = `Import into ${dataset.name} · Loadbay`;
  const heading = h("h1", {}, `Import into ${dataset.name}`);
  const body = h("div");
  replace(main, heading, body);
  let shown = null;
  let delay = 500;
  let nap = null; // the wait between two polls; a decision just sent ends it early
  const refresh = () => { delay = 300; if (nap) nap.abort(); };
  for (;;) {
    if (job.status !== shown) {
      show(body, dataset, job, { problem, signal, refresh });
      if (shown !== null) announce(`Import ${PHASES[job.status] || job.status}`);
      shown = job.status;
      delay = 500;
    } else {
      update(body, job);
    }
    if (!RUNNING.has(job.status) && job.status !== "awaiting_review") return undefined;
    nap = new AbortController();
    const wake = nap;
    const leave = () => wake.abort();  // leaving the page ends the wait too (AbortSignal.any is too new)
    signal.addEventListener("abort", leave, { once: true });
    try {
      await sleep(delay, wake.signal);
    } catch (error) {
      if (signal.aborted) throw error;
    } finally {
      signal.removeEventListener("abort", leave);
    }
    delay = Math.min(delay * 1.5, 5000);
    job = await api.poll(`/imports/${jobId}`, { signal });
  }
}

function progressPanel(job) {
  const bar = h("progress", { max: 100, value: job.progress.percent, id: "import-progress", "aria-label": "Import progress" });
  return h("div", { class: "progress-panel" },
    h("p", { class: "phase", id: "import-phase" }, PHASES[job.status] || job.status),
    bar,
    h("p", { id: "import-numbers" }, numbers(job)));
}

function numbers(job) {
  const { done, total, percent } = job.progress;
  return `${count(done)} of ${count(total)} rows (${Math.round(percent)}%)`;
}

function update(body, job) {
  const bar = body.querySelector("#import-progress");
  if (bar) bar.value = job.progress.percent;
  const text = body.querySelector("#import-numbers");
  if (text) text.textContent = numbers(job);
}

function countsTable(job) {
  const c = job.counts;
  const rows = [["Rows in the file", count(c.rows)], ["Valid", count(c.valid)], ["Invalid", count(c.invalid)]];
  if (!RUNNING.has(job.status) && job.status !== "awaiting_review") {
    rows.push(["Inserted", count(c.inserted)], ["Updated", count(c.updated)], ["Unchanged", count(c.unchanged)]);
  }
  return h("dl", { class: "facts counts", id: "import-counts" }, rows.flatMap(([label, value]) => [h("dt", {}, label), h("dd", { "data-count": label }, value)]));
}

function summaryTable(job) {
  if (!job.errorSummary.length) return h("p", {}, "No row has an error.");
  return table("Errors by column and rule", ["Column", "Rule", "Rows"],
    job.errorSummary.map((item) => [item.column || "(whole row)", RULES[item.code] || item.code, count(item.count)]));
}

function errorsPanel(job, problem, signal) {
  const holder = h("div", { id: "error-rows" });
  const previous = h("button", { type: "button", class: "button" }, "Previous errors");
  const next = h("button", { type: "button", class: "button" }, "Next errors");
  pager({
    holder, previous, next, problem,
    load: (cursor) => api.get(`/imports/${job.id}/errors${query({ cursor, limit: ERRORS_PAGE })}`, { signal }),
    render: (page, position) => table(`Row errors, page ${position + 1}`, ["Row", "Column", "Problem", "Value"],
      page.items.map((error) => [String(error.row), error.column, error.message, cell(error.value)])),
  });
  const stored = job.errorsStored !== null && job.errorsStored !== undefined && job.errorsStored < job.counts.invalid
    ? h("p", { class: "muted" }, `The first ${count(job.errorsStored)} errors are kept; the counts above are complete.`)
    : null;
  return h("section", { "aria-labelledby": "errors-h" },
    h("h2", { id: "errors-h" }, "Row errors"),
    h("p", {}, h("a", { href: `/api/imports/${job.id}/errors.csv`, download: "", class: "button" }, "Download errors.csv")),
    stored, holder, h("div", { class: "pager" }, previous, next));
}

function show(body, dataset, job, { problem, signal, refresh }) {
  const messages = h("div", { "aria-live": "assertive" });
  const decide = (action, label) => h("button", {
    type: "button",
    class: action === "approve" ? "button primary" : action === "reject" ? "button danger" : "button",
    onclick: async (event) => {
      event.target.disabled = true;
      try {
        await api.post(`/imports/${job.id}/${action}`, {}, { signal });
        announce(`${label}: sent`);
        replace(messages, h("p", { role: "status" }, `${label}: sent.`));
        refresh();
      } catch (error) {
        replace(messages, problem(error));
        event.target.disabled = false;
      }
    },
  }, label);
  const parts = [steps(job.status), h("p", { class: "muted" }, `File ${job.fileName || ""}, mode ${job.mode}. Started ${when(job.createdAt)}.`)];
  if (RUNNING.has(job.status)) {
    parts.push(progressPanel(job), job.cancelRequested ? h("p", {}, "Cancelling…") : decide("cancel", "Cancel import"));
  } else if (job.status === "awaiting_review") {
    parts.push(
      h("h2", {}, "Review"),
      h("p", {}, `Decide by ${when(job.expiresAt)}; after that the import expires and nothing is applied.`),
      countsTable(job), summaryTable(job),
      h("div", { class: "actions" }, decide("approve", `Approve: apply ${count(job.counts.valid)} valid rows`), decide("reject", "Reject"), decide("cancel", "Cancel")),
      job.counts.invalid ? errorsPanel(job, problem, signal) : null);
  } else {
    parts.push(
      h("h2", {}, PHASES[job.status] || job.status),
      job.error ? h("div", { class: "problem", role: "alert" }, h("p", {}, job.error)) : null,
      countsTable(job),
      h("p", {}, h("a", { class: "button primary", href: `/datasets/${dataset.id}`, "data-link": true }, `Open ${dataset.name}`)),
      job.counts.invalid ? errorsPanel(job, problem, signal) : null);
  }
  replace(body, parts, messages);
}
