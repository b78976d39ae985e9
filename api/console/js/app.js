// The console's shell: sign-in, the sections an operator's role may open, and a hash router
// (#/live, #/results/<id>, …) so every view has an address that can be bookmarked and shared.

import { can, onSessionChange, session, signIn, signOut } from "./api.js";
import { el, fill, problemText } from "./ui.js";
import dashboard from "./pages/dashboard.js";
import detail from "./pages/detail.js";
import history from "./pages/history.js";
import livePage from "./pages/live.js";
import rules from "./pages/rules.js";
import sources from "./pages/sources.js";
import upload from "./pages/upload.js";
import workers from "./pages/workers.js";

// Each page: {id, title, permission, nav (shown in the menu), render(root, ctx) -> cleanup?}.
const PAGES = [livePage, history, upload, rules, sources, workers, dashboard, detail];
const main = document.getElementById("main");
let cleanup = null;
let shown = 0; // which show() is current: a render that finishes after the next one began is undone

function decoded(part) {
  try {
    return decodeURIComponent(part);
  } catch (_) {
    return part; // a malformed escape: the page then finds nothing by it
  }
}

function route() {
  const [id, ...params] = location.hash.replace(/^#\/?/, "").split("/").map(decoded);
  return { id: id || "live", params };
}

function navigate(hash) {
  if (location.hash === hash) show();
  else location.hash = hash;
}

function renderNav(current) {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  const me = session();
  if (!me) {
    fill(nav);
    fill(who);
    return;
  }
  fill(
    nav,
    PAGES.filter((p) => p.nav && can(p.permission)).map((p) =>
      el("a", { href: `#/${p.id}`, "aria-current": p.id === current ? "page" : null }, p.title),
    ),
    el("a", { href: "/api/docs" }, "API docs"),
  );
  fill(
    who,
    el("span", { "data-testid": "whoami" }, `${me.username} (${me.role})`),
    el("button", { type: "button", onclick: () => signOut() }, "Sign out"),
  );
}

function renderSignIn() {
  const message = el("p", { class: "error", role: "alert" });
  const username = el("input", { name: "username", autocomplete: "username", required: true });
  const password = el("input", {
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = el("button", { class: "primary", type: "submit" }, "Sign in");
  const form = el(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        submit.disabled = true;
        fill(message);
        try {
          await signIn(username.value, password.value);
        } catch (err) {
          fill(message, problemText(err));
          submit.disabled = false;
        }
      },
    },
    el("label", {}, "User name", username),
    el("label", {}, "Password", password),
    submit,
    message,
  );
  fill(main, el("section", { class: "signin panel" }, el("h1", {}, "Sign in"), form));
  username.focus();
}

async function show() {
  const mine = ++shown;
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const { id, params } = route();
  renderNav(id);
  if (!session()) {
    renderSignIn();
    return;
  }
  const page = PAGES.find((p) => p.id === id);
  if (!page) {
    fill(main, el("h1", {}, "Not found"), el("p", {}, "There is no such page. ", el("a", { href: "#/live" }, "Go to Live")));
    return;
  }
  if (!can(page.permission)) {
    fill(main, el("h1", {}, page.title), el("p", {}, `Your role cannot open ${page.title}.`));
    return;
  }
  document.title = `${page.title} · Mug positioning console`;
  const root = el("section", { "aria-labelledby": "page-title", "data-page": page.id });
  fill(main, root);
  try {
    const undo = (await page.render(root, { params, navigate })) || null;
    if (mine !== shown) {
      undo?.(); // the operator moved on while this page was loading: stop its timers and sockets
      return;
    }
    cleanup = undo;
  } catch (err) {
    if (mine !== shown) return;
    fill(root, el("h1", { id: "page-title" }, page.title), el("p", { class: "error", role: "alert" }, problemText(err)));
  }
  main.focus({ preventScroll: true });
}

onSessionChange(() => show());
window.addEventListener("hashchange", show);
show();
