// Live: results as they are stored, newest first, over the WebSocket. The server sends at most
// one result per source per second (the latest), so a busy fleet cannot flood the browser.

import { api, can, live } from "../api.js";
import { resultCard } from "../cards.js";
import { el, field, fill, problemText } from "../ui.js";

const MAX_CARDS = 48;

export default {
  id: "live",
  title: "Live",
  permission: "read:analysis",
  nav: true,
  async render(root) {
    let paused = false;
    let missed = [];
    let stop = null;
    let following = 0; // the newest Follow: an older one still loading gives way
    const state = el("span", { class: "badge", "data-testid": "live-state" }, "connecting");
    const cards = el("div", { class: "cards", "aria-live": "polite", "data-testid": "live-cards" });
    const waiting = el("span", { class: "muted", "data-testid": "missed" });
    const source = el("input", { name: "source", list: "live-sources", placeholder: "every source", size: 18 });
    const sources = el("datalist", { id: "live-sources" });
    const message = el("p", { class: "error", role: "alert" });
    const pause = el("button", { type: "button", "aria-pressed": "false", onclick: togglePause }, "Pause feed");

    function show(result) {
      const card = resultCard(result);
      const same = cards.querySelector(`[data-request-id="${CSS.escape(result.request_id)}"]`);
      if (same) same.replaceWith(card);
      else cards.prepend(card);
      while (cards.children.length > MAX_CARDS) cards.lastElementChild.remove();
    }

    function onEvent(event) {
      if (event.type !== "result") return;
      const result = { ...event.data, coalesced: event.coalesced };
      if (paused) {
        missed = [...missed.slice(-(MAX_CARDS - 1)), result];
        fill(waiting, `${missed.length} new while paused`);
      } else {
        show(result);
      }
    }

    function togglePause() {
      paused = !paused;
      pause.textContent = paused ? "Resume feed" : "Pause feed";
      pause.setAttribute("aria-pressed", String(paused));
      if (!paused) {
        missed.forEach(show);
        missed = [];
        fill(waiting);
      }
    }

    async function connect() {
      const mine = ++following;
      stop?.();
      stop = null;
      fill(cards);
      fill(message);
      const sourceId = source.value.trim() || undefined;
      try {
        const recent = await api("/api/v1/analyze", { query: { limit: 12, source_id: sourceId } });
        if (mine !== following) return;
        [...recent.items].reverse().forEach(show);
      } catch (err) {
        if (mine === following) fill(message, problemText(err));
        return;
      }
      stop = live({ sourceId, onEvent, onState: (s) => fill(state, s) });
    }

    const filter = el(
      "form",
      { class: "row", onsubmit: (e) => { e.preventDefault(); connect(); } },
      field("Source", source),
      sources,
      el("button", { type: "submit" }, "Follow"),
      pause,
      state,
      waiting,
    );
    fill(
      root,
      el("h1", { id: "page-title" }, "Live"),
      filter,
      message,
      el("div", { class: "legend" }, el("span", { class: "ok" }, "passes every rule"), el("span", { class: "bad" }, "fails a rule")),
      cards,
    );
    if (can("read:sources")) {
      api("/api/v1/sources").then((list) => fill(sources, list.map((s) => el("option", { value: s.source_id }, s.source.name || s.source_id)))).catch(() => {});
    }
    await connect();
    return () => {
      following += 1; // a Follow still loading will not open a feed
      stop?.();
    };
  },
};
