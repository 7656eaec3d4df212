// "My datasets": every dataset the visitor owns (an admin sees all), a page at a time.

import { api, query } from "../lib/api.js";
import { count, h, replace, when } from "../lib/dom.js";

export async function render(main, _params, { problem }) {
  document.title = "My datasets · Loadbay";
  const list = h("tbody");
  const more = h("button", { type: "button", class: "button", hidden: true }, "Show more");
  const status = h("p", { class: "muted", role: "status" });
  const refused = h("div");
  let cursor = null;
  let busy = false;

  async function load() {
    if (busy) return;
    busy = true;
    replace(refused);
    try {
      const page = await api.get(`/datasets${query({ cursor, limit: 50 })}`);
      for (const item of page.items) {
        list.append(h("tr", {},
          h("th", { scope: "row" }, h("a", { href: `/datasets/${item.id}`, "data-link": true }, item.name)),
          h("td", { class: "number" }, count(item.rowCount)),
          h("td", {}, item.status === "active" && item.activeJob ? "importing" : item.status),
          h("td", {}, when(item.updatedAt))));
      }
      cursor = page.next;
      more.hidden = !cursor;
      status.textContent = list.children.length ? "" : "You have no datasets yet.";
    } catch (error) {
      replace(refused, problem(error));
    } finally {
      busy = false;
    }
  }

  more.addEventListener("click", load);
  replace(main,
    h("div", { class: "page-head" },
      h("h1", {}, "My datasets"),
      h("a", { class: "button primary", href: "/datasets/new", "data-link": true }, "New dataset")),
    h("div", { class: "table-wrap", role: "region", "aria-label": "Datasets", tabindex: "0" },
      h("table", { class: "grid" },
        h("caption", { class: "visually-hidden" }, "Datasets"),
        h("thead", {}, h("tr", {}, ["Name", "Rows", "Status", "Updated"].map((title) => h("th", { scope: "col" }, title)))),
        list)),
    status, refused, more);
  await load();
}
