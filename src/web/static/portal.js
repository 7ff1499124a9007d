// Progressive enhancement for the portal pages (no inline scripts: the CSP is strict).
// Each part looks for its element and does nothing when the page has none.
const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

// Why a JSON API call failed, in words (problem+json `detail`, else the status).
async function reason(res) {
  try {
    const p = await res.json();
    if (p.detail) return p.detail;
  } catch {
    // not JSON
  }
  return `The server answered ${res.status}. Please try again.`;
}

// Re-render one section from the server (same HTML as a reload).
async function refresh(id) {
  const res = await fetch(location.pathname, { credentials: "same-origin" });
  if (!res.ok) return;
  const doc = new DOMParser().parseFromString(await res.text(), "text/html");
  const next = doc.getElementById(id);
  document.getElementById(id)?.replaceWith(next ?? "");
}

// --- Documents: drag-and-drop or the file input, uploaded with a progress bar. --------------
function enhanceUpload(form) {
  const input = form.querySelector('input[type="file"]');
  const zone = form.querySelector(".dropzone");
  const bar = form.querySelector("progress");
  const status = form.querySelector('[role="status"]');
  form.hidden = false;

  function send(file) {
    const data = new FormData();
    data.append("title", form.elements.title?.value || file.name);
    // Staff choose (the form's select, "internal" unless changed); clients share.
    data.append("confidentiality", form.elements.confidentiality?.value || "shared");
    data.append("file", file);
    const xhr = new XMLHttpRequest();
    // The API answers 201 with JSON (the form's own action is the no-JavaScript fallback).
    xhr.open("POST", form.dataset.api || form.action);
    xhr.setRequestHeader("x-csrf-token", csrf);
    bar.hidden = false;
    bar.value = 0;
    status.textContent = `Uploading ${file.name}…`;
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
    });
    xhr.addEventListener("load", async () => {
      if (xhr.status === 201) {
        bar.value = 100;
        status.textContent = `${file.name} uploaded.`;
        form.reset();
        await refresh("documents-wrap");
      } else {
        let why = `The upload failed (${xhr.status}). Please try again.`;
        try {
          why = JSON.parse(xhr.responseText).detail || why;
        } catch {
          // keep the generic reason
        }
        status.textContent = why;
        status.classList.add("error");
      }
    });
    xhr.addEventListener("error", () => {
      status.textContent = "The upload was interrupted. Check your connection and try again.";
      status.classList.add("error");
    });
    status.classList.remove("error");
    xhr.send(data);
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const file = input.files?.[0];
    if (file) send(file);
  });
  for (const t of ["dragenter", "dragover"]) {
    zone.addEventListener(t, (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const t of ["dragleave", "drop"]) {
    zone.addEventListener(t, () => zone.classList.remove("over"));
  }
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer?.files?.[0];
    if (file) send(file);
  });
}

// --- Invoices: pay online. The JSON API gives the processor's page; go there. ---------------
// Delegated: live updates may replace the form with a fresh copy from the server.
document.addEventListener("submit", async (e) => {
  const form = e.target.closest?.('form[data-enhance="pay"]');
  if (!form) return;
  e.preventDefault();
  const err = form.querySelector(".error");
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const res = await fetch(`/api/v1/invoices/${form.dataset.invoiceId}/checkout`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "x-csrf-token": csrf },
    });
    if (!res.ok) throw new Error(await reason(res));
    const { checkout_url } = await res.json();
    location.assign(checkout_url);
  } catch (x) {
    err.textContent = x.message;
    err.hidden = false;
    button.disabled = false;
  }
});

// --- Time entry: a running timer that fills in the hours. ----------------------------------
function enhanceTimer(button) {
  const hours = document.getElementById("hours");
  let started = null;
  let tick;
  button.hidden = false;
  const show = () => {
    const mins = Math.max(1, Math.round((Date.now() - started) / 60000));
    hours.value = `${Math.floor(mins / 60)}:${String(mins % 60).padStart(2, "0")}`;
  };
  button.addEventListener("click", () => {
    if (started === null) {
      started = Date.now();
      show();
      tick = setInterval(show, 15000);
      button.textContent = "Stop timer";
      button.setAttribute("aria-pressed", "true");
    } else {
      clearInterval(tick);
      show();
      started = null;
      button.textContent = "Start timer";
      button.setAttribute("aria-pressed", "false");
    }
  });
}

for (const el of document.querySelectorAll("[data-enhance]")) {
  ({ upload: enhanceUpload, timer: enhanceTimer })[el.dataset.enhance]?.(el);
}
