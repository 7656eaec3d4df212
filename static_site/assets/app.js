// Loadbay's web UI: a small router over plain ES modules. Values from files are always text, never HTML.

import { ApiError, signIn } from "./lib/api.js";
import { announce, h, replace } from "./lib/dom.js";
import * as admin from "./pages/admin.js";
import * as dataset from "./pages/dataset.js";
import * as datasets from "./pages/datasets.js";
import * as importJob from "./pages/import-job.js";
import * as importStart from "./pages/import-start.js";
import * as newDataset from "./pages/new-dataset.js";

const ROUTES = [
  [/^\/$/, datasets, false],
  [/^\/datasets\/?$/, datasets, true],
  [/^\/datasets\/new\/?$/, newDataset, true],
  [/^\/datasets\/([0-9a-z]{26})\/?$/, dataset, true],
  [/^\/datasets\/([0-9a-z]{26})\/import\/?$/, importStart, true],
  [/^\/datasets\/([0-9a-z]{26})\/import\/([0-9a-z]{26})\/?$/, importStart, true],
  [/^\/imports\/([0-9a-z]{26})\/?$/, importJob, true],
  [/^\/admin\/?$/, admin, true],
];

const main = document.getElementById("main");
let me = null;
let leave = null;
let visit = null; // aborted when the visitor leaves the page: stops its polling and late updates

async function whoAmI() {
  try {
    const answer = await fetch("/.auth/me", { credentials: "same-origin" });
    const body = answer.ok ? await answer.json() : null;
    return body && body.clientPrincipal ? body.clientPrincipal : null;
  } catch {
    return null;
  }
}

function header() {
  const nav = document.getElementById("nav");
  const links = me
    ? [
        h("a", { href: "/datasets", "data-link": true }, "My datasets"),
        h("a", { href: "/datasets/new", "data-link": true }, "New dataset"),
        (me.userRoles || []).includes("admin") ? h("a", { href: "/admin", "data-link": true }, "Admin") : null,
        h("span", { class: "who" }, me.userDetails || me.userId),
        h("a", { href: "/logout" }, "Sign out"),
      ]
    : [h("a", { href: "/login" }, "Sign in")];
  replace(nav, links);
}

/** Go to a path inside the app without reloading the page. */
export function navigate(path, { replace: replaceState = false } = {}) {
  if (replaceState) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render();
}

/** Show an error from the API (or anything else) as a readable message, never as raw data. */
export function problem(error) {
  const title = error instanceof ApiError ? error.title : "Something went wrong";
  const detail = error instanceof ApiError ? error.detail : (error && error.message) || String(error);
  const items = error instanceof ApiError && error.problems.length
    ? h("ul", {}, error.problems.map((item) => h("li", {}, [item.field, item.message || item.code].filter(Boolean).join(": "))))
    : null;
  return h("div", { class: "problem", role: "alert" }, h("strong", {}, title), h("p", {}, detail), items);
}

async function render() {
  if (leave) {
    leave();
    leave = null;
  }
  if (visit) visit.abort();
  visit = new AbortController();
  const started = document.activeElement;
  const { signal } = visit;
  const path = location.pathname;
  const match = ROUTES.map(([pattern, page, guarded]) => [pattern.exec(path), page, guarded]).find(([found]) => found);
  window.scrollTo(0, 0);
  if (!match) {
    document.title = "Not found · Loadbay";
    replace(main, h("h1", { tabindex: "-1" }, "Page not found"),
      h("p", {}, "There is nothing at this address. ", h("a", { href: "/", "data-link": true }, "Go to your datasets"), "."));
    focusHeading(started);
    return;
  }
  const [found, page, guarded] = match;
  if (guarded && !me) {
    signIn();
    return;
  }
  if (!me) {
    document.title = "Loadbay";
    replace(main,
      h("h1", { tabindex: "-1" }, "Bulk CSV imports into Azure Table Storage"),
      h("p", {}, "Upload a CSV file, see its profile, map and validate it against a dataset's schema, review what is wrong, and load the good rows."),
      h("p", {}, h("a", { class: "button primary", href: "/login" }, "Sign in to start")));
    focusHeading(started);
    return;
  }
  replace(main, h("p", { class: "muted" }, "Loading…"));
  try {
    leave = (await page.render(main, found.slice(1), { me, navigate, problem, signal })) || null;
  } catch (error) {
    if ((error && error.name === "AbortError") || signal.aborted) return;
    replace(main, h("h1", { tabindex: "-1" }, "This page could not be shown"), problem(error));
    announce(error.message || "Error");
  }
  focusHeading(started);
}

// Move focus to the new page's heading, unless the visitor moved it while the page loaded (a keyboard
// user who tabs on while a list loads keeps their place).
function focusHeading(started) {
  const now = document.activeElement;
  if (now && now !== document.body && now !== started) return;
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
window.addEventListener("popstate", render);

(async () => {
  me = await whoAmI();
  header();
  await render();
})();

