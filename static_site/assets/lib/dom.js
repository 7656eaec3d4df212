// Building the page: elements from data, text always set as text (never parsed as HTML).

/**
 * Create an element. `props`: attributes (on* keys become listeners, `class`, `dataset`, booleans);
 * children: nodes, strings (inserted as text), arrays, or null/false (skipped).
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") {
      Object.assign(element.dataset, value);
    } else if (key === "value" || key === "checked" || key === "disabled" || key === "selected") {
      element[key] = value;
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.append(child);
    else parent.append(document.createTextNode(String(child)));
  }
}

/** Replace everything inside `node` with `children`. */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** Say something to screen readers (and show it in the status line). */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (region) {
    region.textContent = "";
    // A fresh text node after a tick, so the same message twice is still read out.
    setTimeout(() => { region.textContent = text; }, 30);
  }
}

/** Format a count the way people read it: 12,345. */
export function count(value) {
  return value === null || value === undefined ? "–" : Number(value).toLocaleString("en");
}

/** Format bytes: 1.2 MB. */
export function bytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["bytes", "KB", "MB", "GB"];
  let size = Number(value);
  let unit = 0;
  while (size >= 1000 && unit < units.length - 1) {
    size /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${size} bytes` : `${size.toFixed(1)} ${units[unit]}`;
}

/** Format an ISO time as local date and time. */
export function when(iso) {
  return iso ? new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" }) : "–";
}

/** A cell value as text: null as an empty-looking dash, everything else as it is. */
export function cell(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** A labelled form control, with an optional hint. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" }, h("label", { for: id }, label), control,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null);
}

/** A table from column titles and rows of cells (strings or nodes). */
export function table(caption, headers, rows, { className = "grid" } = {}) {
  return h("div", { class: "table-wrap", role: "region", "aria-label": caption, tabindex: "0" },
    h("table", { class: className },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((title) => h("th", { scope: "col" }, title)))),
      h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((value) => h("td", {}, value)))))));
}

/** Wait `ms` milliseconds; stop early with an AbortError when `signal` aborts (the visitor left the page). */
export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(new DOMException("Left the page", "AbortError"));
      return;
    }
    const timer = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new DOMException("Left the page", "AbortError"));
      }, { once: true });
    }
  });
}
