// Upload: several pictures at once (drag and drop, or choose), each with its progress, then its
// result as it is stored.

import { api, upload } from "../api.js";
import { resultCard } from "../cards.js";
import { el, field, fill, problemText } from "../ui.js";

const POLL_MS = 1000;
const GIVE_UP_MS = 120_000;

async function resultOf(requestId, until, gone) {
  while (Date.now() < until && !gone()) {
    const found = await api(`/api/v1/analyze/${encodeURIComponent(requestId)}`);
    if (found.status !== "pending") return found;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  if (gone()) return null;
  throw new Error("no result yet: see History later");
}

export default {
  id: "upload",
  title: "Upload",
  permission: "write:analysis",
  nav: true,
  async render(root) {
    let leaving = false;
    const source = el("input", { name: "source_id", size: 18, placeholder: "api" });
    const chooser = el("input", { type: "file", name: "images", multiple: true, accept: "image/*" });
    const items = el("div", { class: "uploads", "data-testid": "uploads" });
    const cards = el("div", { class: "cards", "data-testid": "upload-results" });

    async function send(file) {
      const bar = el("progress", { max: 1, value: 0, "aria-label": `Upload of ${file.name}` });
      const state = el("span", { class: "muted" }, "uploading");
      items.append(el("div", { class: "row" }, el("strong", {}, file.name), bar, state));
      try {
        const answer = await upload(file, { sourceId: source.value.trim(), onProgress: (f) => (bar.value = f) });
        bar.value = 1;
        fill(state, "analysing…");
        const result = await resultOf(answer.request_id, Date.now() + GIVE_UP_MS, () => leaving);
        if (leaving) return;
        fill(state, "done");
        cards.prepend(resultCard(result));
      } catch (err) {
        state.className = "error";
        state.setAttribute("role", "alert");
        fill(state, problemText(err));
      }
    }

    function take(files) {
      [...files].forEach(send);
    }

    const zone = el(
      "div",
      {
        class: "dropzone",
        "data-testid": "dropzone",
        ondragover: (e) => { e.preventDefault(); zone.classList.add("over"); },
        ondragleave: () => zone.classList.remove("over"),
        ondrop: (e) => {
          e.preventDefault();
          zone.classList.remove("over");
          take(e.dataTransfer.files);
        },
      },
      el("p", {}, "Drop pictures here, or"),
      field("Choose pictures", chooser),
    );
    chooser.addEventListener("change", () => {
      take(chooser.files);
      chooser.value = "";
    });
    fill(
      root,
      el("h1", { id: "page-title" }, "Upload"),
      el("div", { class: "row" }, field("Source", source)),
      zone,
      items,
      el("h2", {}, "Results"),
      cards,
    );
    return () => {
      leaving = true;
    };
  },
};
