// The caller's identity, for a server run with --auth on (server/auth.py): an access token from
// an identity provider, or an Earshot API key. Earshot has no login of its own: a site that embeds
// it signs the user in with its identity provider (OIDC authorization code + PKCE) and opens the
// page as index.html#access_token=<token>. The page takes the token out of the address bar at once
// and keeps it for this tab in sessionStorage. Without one, a Start that the server refuses with
// 401 shows a small "Access key" field (for API keys; `earshot api-key` makes them).
// With --auth none (the default) none of this shows.

const STORAGE_KEY = "earshot.credential";
let inMemory = ""; // when sessionStorage is disabled

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

function remember(credential) {
  inMemory = credential;
  try {
    storage()?.setItem(STORAGE_KEY, credential);
  } catch {
    /* storage disabled: kept in memory for this page */
  }
}

/** Moves #access_token=... from the address into this tab's storage (other fragment keys stay). */
function takeFromAddress() {
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const token = params.get("access_token");
  if (!token) return;
  remember(token);
  params.delete("access_token");
  const rest = params.toString();
  const { pathname, search } = window.location;
  window.history.replaceState(null, "", `${pathname}${search}${rest ? `#${rest}` : ""}`);
}

/** This tab's access token or API key, or "" when it has none. */
export function identityCredential() {
  return storage()?.getItem(STORAGE_KEY) ?? inMemory;
}

/** Forgets a credential the server refused, and shows the "Access key" field (once). */
export function askForCredential() {
  storage()?.removeItem(STORAGE_KEY);
  inMemory = "";
  if (document.querySelector("[data-testid=access-key]")) return;
  const form = document.createElement("form");
  form.className = "access-key";
  form.dataset.testid = "access-key";
  const label = document.createElement("label");
  const input = document.createElement("input");
  input.type = "password";
  input.autocomplete = "off";
  label.append("Access key ", input);
  const use = document.createElement("button");
  use.type = "submit";
  use.textContent = "Use";
  form.append(label, use);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!input.value.trim()) return;
    remember(input.value.trim());
    form.remove();
  });
  (document.querySelector("main") ?? document.body).prepend(form);
  input.focus();
}

takeFromAddress();
