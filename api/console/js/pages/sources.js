// Placeholder while this page is written: the shell needs every module it imports.
import { el, fill } from "../ui.js";

export default {
  id: "sources",
  title: "Sources",
  permission: "read:sources",
  nav: true,
  render(root) {
    fill(root, el("h1", { id: "page-title" }, "Sources"));
  },
};
