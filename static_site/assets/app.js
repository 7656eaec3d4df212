// Placeholder shell: shows who is signed in and whether the API answers. Text only, never HTML.
const who = document.getElementById("who");
const authLink = document.getElementById("auth-link");
const status = document.getElementById("status");

async function load() {
  const health = await fetch("/api/health").then((r) => r.ok, () => false);
  status.textContent = health ? "The service is up." : "The service is not answering right now.";
  const me = await fetch("/api/me");
  if (me.ok) {
    const principal = await me.json();
    who.textContent = `Signed in as ${principal.userDetails || principal.userId}`;
    authLink.textContent = "Sign out";
    authLink.href = "/logout";
  }
}

load();
