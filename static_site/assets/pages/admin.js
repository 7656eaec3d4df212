// Operators (role admin): queue depths, poison messages to replay or discard, and failed work.

import { api, query } from "../lib/api.js";
import { announce, count, h, replace, table, when } from "../lib/dom.js";

export async function render(main, _params, { me, problem, signal }) {
  document.title = "Admin · Loadbay";
  if (!(me.userRoles || []).includes("admin")) {
    replace(main, h("h1", {}, "Admin"), h("p", {}, "This page needs the admin role."));
    return undefined;
  }
  const queues = h("div");
  const poison = h("div");
  const failed = h("div");
  replace(main,
    h("h1", {}, "Admin"),
    h("section", { "aria-labelledby": "queues-h" }, h("h2", { id: "queues-h" }, "Queues"), queues),
    h("section", { "aria-labelledby": "poison-h" }, h("h2", { id: "poison-h" }, "Poison messages"), poison),
    h("section", { "aria-labelledby": "failed-h" }, h("h2", { id: "failed-h" }, "Failed work"), failed));

  async function refresh() {
    try {
      const [depths, messages, jobs] = await Promise.all([
        api.get("/ops/queues", { signal }),
        api.get("/ops/poison", { signal }),
        api.get(`/ops/jobs${query({ status: "failed", limit: 50 })}`, { signal }),
      ]);
      replace(queues, table("Queue depths", ["Queue", "Waiting", "Poison"],
        depths.items.map((item) => [item.name, count(item.depth), count(item.poison)])));
      replace(poison, messages.items.length
        ? table("Poison messages", ["Queue", "Message", "Added", "Tries", "Actions"], messages.items.map((item) => [
            item.queue, h("code", {}, item.body), when(item.insertedAt), count(item.dequeueCount),
            h("span", { class: "actions" },
              act("Replay", `/ops/poison/${item.queue}/${item.id}/replay`, "post", item),
              act("Discard", `/ops/poison/${item.queue}/${item.id}`, "delete", item))]))
        : h("p", { class: "muted" }, "No poison messages."));
      replace(failed, jobs.items.length
        ? table("Failed jobs and uploads", ["Kind", "Id", "Owner", "Error", "When"],
            jobs.items.map((item) => [item.kind, item.id, item.owner, item.error || "", when(item.updatedAt)]))
        : h("p", { class: "muted" }, "Nothing has failed."));
    } catch (error) {
      if (error.name !== "AbortError") replace(queues, problem(error));
    }
  }

  function act(label, path, method, item) {
    return h("button", {
      type: "button", class: "button", "aria-label": `${label} message ${item.id} of ${item.queue}`,
      onclick: async (event) => {
        event.target.disabled = true;
        try {
          await (method === "post" ? api.post(path, {}, { signal }) : api.delete(path, { signal }));
          announce(`${label === "Replay" ? "Replayed" : "Discarded"} a message of ${item.queue}`);
          await refresh();
        } catch (error) {
          event.target.replaceWith(problem(error));
        }
      },
    }, label);
  }

  await refresh();
  return undefined;
}
