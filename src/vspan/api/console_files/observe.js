// Frame events: the per-frame stream of `vspan observe` (GET /observe?format=sse), shown
// when the switch serves it (its access table lists GET /observe). Each event is one line,
// newest first, at most MAX_LINES; Stop detaches the switch's observer (the stream ends).

import { ApiError, call, readEvents } from "./api.js";

const MAX_LINES = 200;
const $ = (id) => document.getElementById(id);
let running = null;

/** One line for an event (the fields of docs/observe.md). */
export function eventLine(ev) {
  const s = ev.summary || {};
  const who = [s.src_ip || s.src_mac, s.dst_ip || s.dst_mac].filter(Boolean).join(" > ");
  let what = "";
  if (ev.type === "forwarded") {
    what = "-> " + (ev.outputs || []).map((o) => o.port).join(", ");
  } else if (ev.type === "mirrored") {
    what = `copy by ${ev.session} -> ${ev.destination}`;
  } else if (ev.type === "dropped") {
    what = `at ${ev.port} [${ev.stage}] ${ev.reason}` + (ev.rule ? ` rule ${ev.rule}` : "");
  }
  const time = (ev.time || "").slice(11, 23);
  return `${time} #${ev.frame} ${ev.type} ${ev.in_port} ${what} | ${who} ${s.proto || ""}`.trim();
}

function add(list, text) {
  const li = document.createElement("li");
  li.textContent = text;
  list.prepend(li);
  while (list.children.length > MAX_LINES) {
    list.lastElementChild.remove();
  }
}

async function watch() {
  const list = $("observe-list");
  const ctl = new AbortController();
  running = ctl;
  $("observe-toggle").textContent = "Stop";
  const verdict = $("observe-verdict").value;
  const path = `/observe?format=sse&verdict=${encodeURIComponent(verdict)}`;
  try {
    await readEvents(path, (name, data) => {
      if (name === "suppressed") {
        add(list, `-- suppressed: ${data.sampled_out} sampled out, ${data.rate_limited} over ` +
          `the rate cap, ${data.queue_full} not read in time --`);
      } else if (name !== "started") {
        add(list, eventLine(data));
      }
    }, ctl.signal);
  } catch (err) {
    if (!ctl.signal.aborted) {
      $("observe-msg").textContent = err instanceof ApiError ? err.describe() : String(err);
    }
  } finally {
    running = null;
    $("observe-toggle").textContent = "Watch";
  }
}

/** Offer the stream when the switch serves it; leave the note otherwise. */
export async function offerObserve() {
  let rows;
  try {
    rows = await call("GET", "/auth/access");
  } catch {
    return;
  }
  if (!rows.some((r) => r.method === "GET" && r.path === "/observe")) {
    return;
  }
  $("observe-msg").textContent = "Every frame's verdict as it happens (vspan observe).";
  const form = $("observe-form");
  form.hidden = false;
  if (!form.dataset.ready) {
    form.dataset.ready = "1";
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (running) {
        running.abort();
      } else {
        watch();
      }
    });
  }
}

/** Stop watching (logging out). */
export function stopObserve() {
  if (running) {
    running.abort();
  }
}
