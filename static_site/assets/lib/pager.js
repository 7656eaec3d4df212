// Pages through a list by its `next` cursors, with Previous and Next buttons that keep the keyboard focus.
import { replace } from "./dom.js";

// load(cursor) resolves to a page {items, next}; render(page, position) builds what `holder` shows;
// problem(error) builds what it shows instead when a page cannot be had. `status`, if given, names the page.
export function pager({ holder, previous, next, status, load, render, problem }) {
  const cursors = [null];
  let position = 0;
  let busy = false;

  // The buttons stay enabled while a page loads (a disabled button loses the keyboard focus); clicks
  // during a load are ignored. A button that ends up disabled hands its focus to the new page.
  async function show(step) {
    if (busy) return;
    busy = true;
    const from = position;
    position += step;
    try {
      const page = await load(cursors[position]);
      cursors[position + 1] = page.next;
      replace(holder, render(page, position));
      if (status) status.textContent = page.items.length ? `Page ${position + 1}` : "";
    } catch (error) {
      position = from;
      if (error.name !== "AbortError") replace(holder, problem(error));
    } finally {
      busy = false;
    }
    const focused = document.activeElement;
    previous.disabled = position === 0;
    next.disabled = !cursors[position + 1];
    if ((focused === previous || focused === next) && focused.disabled) {
      (holder.querySelector(".table-wrap") || (focused === previous ? next : previous)).focus();
    }
  }

  previous.addEventListener("click", () => show(-1));
  next.addEventListener("click", () => show(1));
  show(0);
}
