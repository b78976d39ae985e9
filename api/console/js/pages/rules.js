// Placeholder while this page is written: the shell needs every module it imports.
import { el, fill } from "../ui.js";

export default {
  id: "rules",
  title: "Rules",
  permission: "read:rules",
  nav: true,
  render(root) {
    fill(root, el("h1", { id: "page-title" }, "Rules"));
  },
};
