// Live updates for the portal pages: one WebSocket per page (ticket from POST /ws-ticket),
// reconnected with back-off and resumed after the last event seen. On events for what the
// page shows, the affected section is re-rendered from the server (same HTML as a reload)
// and a short notice appears in the polite live region.
const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
const me = document.querySelector('meta[name="user-id"]')?.content ?? "";
const caseId = document.querySelector("[data-case-id]")?.dataset.caseId ?? null;
const toasts = document.getElementById("toasts");

let lastId = 0;
let delay = 1000;
// Everything a page may show live: on the first connection these are fetched once more, so
// what happened between rendering the page and opening the socket is not missed.
const LIVE = ["thread-wrap", "summary-facts", "timeline-wrap", "documents-wrap", "invoices-wrap",
  "invoice-facts", "unread", "my-cases", "balance", "nav-messages", "inbox-wrap"];

function toast(text) {
  if (!toasts) return;
  const t = document.createElement("p");
  t.className = "toast";
  t.textContent = text;
  toasts.append(t);
  setTimeout(() => t.remove(), 6000);
}

// Fetch this page again and swap in the given elements (by id), leaving forms alone.
async function refresh(ids) {
  // Same query too: a searched or filtered list stays searched.
  // A hidden tab says so: the matter page then does not count its thread as read.
  const headers = document.visibilityState === "visible" ? {} : { "x-portal-refresh": "hidden" };
  const res = await fetch(location.pathname + location.search, { credentials: "same-origin", headers });
  if (!res.ok) return;
  const doc = new DOMParser().parseFromString(await res.text(), "text/html");
  for (const id of ids) {
    const now = document.getElementById(id);
    const next = doc.getElementById(id);
    if (now && next) now.replaceWith(next);
  }
}

function handle(ev) {
  const here = caseId !== null && ev.case_id === caseId;
  switch (ev.type) {
    case "message.created":
      // The navigation's unread count is on every page.
      if (here) refresh(["thread-wrap", "nav-messages"]);
      else if (!caseId) refresh(["unread", "inbox-wrap", "nav-messages"]);
      else refresh(["nav-messages"]);
      if (ev.data?.sender_id !== me) toast("New message received.");
      break;
    case "message.read":
      if (here) refresh(["thread-wrap", "nav-messages"]);
      else refresh(["nav-messages", "inbox-wrap"]);
      break;
    case "invoice.sent":
    case "payment.received":
      if (here) refresh(["invoices-wrap", "invoice-facts"]);
      else if (!caseId) refresh(["balance"]);
      toast(ev.type === "invoice.sent" ? "A new invoice is ready." : "Payment received. Thank you.");
      break;
    case "case.updated":
      if (here) refresh(["summary-facts", "timeline-wrap", "invoice-facts"]);
      else if (!caseId) refresh(["my-cases"]);
      toast("A matter was updated.");
      break;
    case "document.created":
    case "document.updated":
      if (here) refresh(["documents-wrap"]);
      toast("A document was shared.");
      break;
    default:
      break;
  }
}

async function connect() {
  let ticket;
  try {
    const res = await fetch("/api/v1/ws-ticket", {
      method: "POST",
      credentials: "same-origin",
      headers: { "x-csrf-token": csrf },
    });
    if (res.status === 401) return; // signed out: nothing to follow
    if (!res.ok) throw new Error("ticket " + res.status);
    ({ ticket } = await res.json());
  } catch {
    return retry();
  }
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/api/v1/ws?ticket=${encodeURIComponent(ticket)}`);
  let ping;
  ws.addEventListener("open", () => {
    delay = 1000;
    if (lastId > 0) ws.send(JSON.stringify({ type: "resume", after: lastId }));
    else refresh(LIVE);
    ping = setInterval(() => ws.send(JSON.stringify({ type: "ping" })), 25000);
    document.documentElement.dataset.live = "on";
  });
  ws.addEventListener("message", (m) => {
    let ev;
    try {
      ev = JSON.parse(m.data);
    } catch {
      return;
    }
    if (typeof ev.id === "number") lastId = Math.max(lastId, ev.id);
    handle(ev);
  });
  ws.addEventListener("close", () => {
    clearInterval(ping);
    document.documentElement.dataset.live = "off";
    retry();
  });
}

function retry() {
  setTimeout(connect, delay);
  delay = Math.min(delay * 2, 30000);
}

// Coming back to a matter tab: what arrived meanwhile is read now (the page marks it).
document.addEventListener("visibilitychange", () => {
  if (caseId && document.visibilityState === "visible") refresh(["thread-wrap", "nav-messages"]);
});

connect();
