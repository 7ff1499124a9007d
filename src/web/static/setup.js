// Accepts the first-run invitation: the token comes from the link, the rest from the form.
const form = document.getElementById("setup");
const result = document.getElementById("result");
const token = new URLSearchParams(location.search).get("token") || "";

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(form));
  result.textContent = "Creating…";
  const res = await fetch("/api/v1/auth/accept-invitation", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token, email: data.email, name: data.name, password: data.password }),
  });
  if (res.status === 201) {
    form.hidden = true;
    result.textContent = "Done. Sign in at /login with " + data.email + ".";
    return;
  }
  const problem = await res.json().catch(() => ({}));
  const details = (problem.errors || []).map((e) => e.field + " " + e.message).join("; ");
  result.textContent = (problem.detail || "Setup failed.") + (details ? " " + details : "");
});
