// Placeholder while this page is written: the shell needs every module it imports.
import { el, fill } from "../ui.js";

export default {
  id: "dashboard",
  title: "Dashboard",
  permission: "read:dashboard",
  nav: true,
  render(root) {
    fill(root, el("h1", { id: "page-title" }, "Dashboard"));
  },
};
