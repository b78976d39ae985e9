// Placeholder while this page is written: the shell needs every module it imports.
import { el, fill } from "../ui.js";

export default {
  id: "workers",
  title: "Workers",
  permission: "read:servers",
  nav: true,
  render(root) {
    fill(root, el("h1", { id: "page-title" }, "Workers"));
  },
};
