// The vspan console: log in with a token, then the switch's ports, mirror sessions, drops
// and picture from the live event stream (GET /events), mirror session changes, and traces.
// Every string from the switch goes into the page as text (textContent), never as markup.

import { ApiError, call, forgetToken, readEvents, setToken, token } from "./api.js";
import { offerObserve, stopObserve } from "./observe.js";
import { drawSwitch, pictureKey } from "./picture.js";
import { showTrace, traceBody } from "./trace.js";

const $ = (id) => document.getElementById(id);
const state = { switchName: "", picture: "", ports: [], stream: null, live: false };

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text === undefined || text === null ? "" : String(text);
  if (cls) {
    td.className = cls;
  }
  return td;
}

function rowHeader(row, text) {
  const th = document.createElement("th");
  th.scope = "row";
  th.textContent = text;
  row.append(th);
}

function num(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : "";
}

// A table's rows from data. When the rows are the same ones as before (same `shape`: their
// keys and whatever changes their buttons), only the texts that changed are replaced, in
// place: keyboard focus on a row's button and a screen reader's place survive each update.
function fill(tbody, rows, render, empty, shape) {
  const fresh = document.createElement("tbody");
  for (const r of rows) {
    render(fresh.insertRow(), r);
  }
  if (!rows.length) {
    const td = cell(fresh.insertRow(), empty, "empty");
    td.colSpan = tbody.parentElement.tHead.rows[0].cells.length;
  }
  fresh.dataset.shape = JSON.stringify(rows.map(shape));
  if (tbody.dataset.shape !== fresh.dataset.shape) {
    tbody.replaceWith(fresh);
    return;
  }
  [...tbody.rows].forEach((row, i) => {
    [...row.cells].forEach((old, j) => {
      const now = fresh.rows[i].cells[j];
      if (!old.querySelector("button") && old.textContent !== now.textContent) {
        old.textContent = now.textContent;
        old.className = now.className;
      }
    });
  });
}

function message(id, text, ok) {
  const p = $(id);
  p.textContent = text;
  p.classList.toggle("ok", Boolean(ok));
}

// ------------------------------------------------------------------------------ rendering
function renderPorts(ports) {
  fill($("ports-table").tBodies[0], ports, (row, p) => {
    row.dataset.port = p.name;
    rowHeader(row, p.name);
    cell(row, p.type);
    cell(row, p.interface);
    cell(row, p.link, `link-${p.link}`);
    cell(row, p.vlan);
    cell(row, (p.policy || []).join(", ") || "none");
    cell(row, p.role || "—");
    cell(row, num(p.counters.rx_frames), "num rx");
    cell(row, num(p.counters.tx_frames), "num tx");
    cell(row, num(p.counters.mirrored_out), "num mirrored");
    cell(row, num(p.counters.dropped), "num dropped");
    cell(row, num(p.macs), "num");
  }, "no ports", (p) => p.name);
  state.ports = ports.map((p) => p.name);
  const select = $("t-port");
  if (select.options.length !== ports.length) {
    const keep = select.value;
    select.replaceChildren(...ports.map((p) => new Option(p.name, p.name)));
    if (state.ports.includes(keep)) {
      select.value = keep;
    }
  }
}

function actionButton(label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

function renderMirrors(mirrors) {
  fill($("mirrors-table").tBodies[0], mirrors, (row, m) => {
    row.dataset.session = m.name;
    rowHeader(row, m.name);
    cell(row, m.enabled ? "enabled" : "disabled", "state");
    cell(row, m.sources.join(", "));
    cell(row, m.destinations.join(", "));
    cell(row, m.status);
    cell(row, num(m.counters.mirrored), "num copies");
    cell(row, num(m.counters.bytes), "num");
    const actions = cell(row, "", "actions");
    const toggle = m.enabled ? "disable" : "enable";
    actions.append(
      actionButton(m.enabled ? "Disable" : "Enable", () => mirrorAction(m.name, toggle)),
      actionButton("Delete", () => mirrorAction(m.name, "delete")));
    for (const b of actions.querySelectorAll("button")) {
      b.setAttribute("aria-label", `${b.textContent} session ${m.name}`);
    }
  }, "no mirror sessions", (m) => [m.name, m.enabled]);
}

function renderDrops(drops) {
  fill($("drops-table").tBodies[0], drops, (row, d) => {
    cell(row, d.port);
    cell(row, d.reason);
    cell(row, d.rule || "—");
    cell(row, num(d.frames), "num");
  }, "no drops", (d) => [d.port, d.reason, d.rule]);
}

function renderPicture(ports, mirrors) {
  const key = pictureKey(state.switchName, ports, mirrors);
  if (key === state.picture) {
    return;
  }
  state.picture = key;
  $("picture-box").replaceChildren(drawSwitch(state.switchName, ports, mirrors));
}

function render(snapshot) {
  renderPorts(snapshot.ports);
  renderMirrors(snapshot.mirrors);
  renderDrops(snapshot.drops);
  renderPicture(snapshot.ports, snapshot.mirrors);
  if (!state.live) {  // announced once, not at every update
    state.live = true;
    message("live", "live", true);
  }
  $("live-time").textContent = `· updated ${new Date().toLocaleTimeString()}`;
}

// ---------------------------------------------------------------------------- live stream
async function follow() {
  if (state.stream) {
    state.stream.abort();
  }
  const ctl = new AbortController();
  state.stream = ctl;
  state.live = false;
  message("live", "connecting…");
  let wait = 1000;
  while (!ctl.signal.aborted) {
    try {
      await readEvents("/events", (name, data) => {
        wait = 1000;
        if (name === "snapshot") {
          render(data);
        } else if (name === "end" && data.status) {
          throw new ApiError(data.status, data);
        }
      }, ctl.signal);
    } catch (err) {
      if (ctl.signal.aborted) {
        return;
      }
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
        logout(err.describe());
        return;
      }
      state.live = false;
      message("live", `disconnected (${err.message}); retrying in ${wait / 1000} s`);
    }
    await new Promise((ok) => setTimeout(ok, wait));
    wait = Math.min(wait * 2, 15000);
  }
}

async function refreshMirrors() {
  try {
    const mirrors = await call("GET", "/show/mirrors");
    renderMirrors(mirrors);
  } catch {
    // the stream brings it with its next snapshot
  }
}

// ------------------------------------------------------------------------ mirror sessions
async function mirrorAction(name, action) {
  const path = `/mirrors/${encodeURIComponent(name)}`;
  try {
    if (action === "delete") {
      await call("DELETE", path);
    } else {
      await call("POST", `${path}/${action}`);
    }
    message("mirror-msg", `Session ${name}: ${action}d.`, true);
    await refreshMirrors();
  } catch (err) {
    message("mirror-msg", err instanceof ApiError ? err.describe() : String(err));
  }
}

function parseSources(text) {
  return text.split(",").map((s) => s.trim()).filter(Boolean).map((s) => {
    const [port, direction] = s.split(":");
    return direction ? { port, direction } : { port };
  });
}

async function createMirror(event) {
  event.preventDefault();
  const name = $("m-name").value.trim();
  const body = {
    sources: parseSources($("m-sources").value),
    destinations: $("m-dests").value.split(",").map((s) => s.trim()).filter(Boolean),
    enabled: $("m-enabled").checked,
  };
  if ($("m-truncate").value) {
    body.mirrored_packet_length = Number($("m-truncate").value);
  }
  if ($("m-sample").value && $("m-sample").value !== "1") {
    body.sampling_rate = Number($("m-sample").value);
  }
  try {
    await call("POST", `/mirrors/${encodeURIComponent(name)}`, body);
    message("mirror-msg", `Session ${name} created.`, true);
    $("mirror-form").reset();
    await refreshMirrors();
  } catch (err) {
    message("mirror-msg", err instanceof ApiError ? err.describe() : String(err));
  }
}

// ---------------------------------------------------------------------------------- trace
async function runTrace(event) {
  event.preventDefault();
  message("trace-msg", "");
  try {
    const result = await call("POST", "/trace", traceBody());
    showTrace($("trace-out"), result);
  } catch (err) {
    $("trace-out").replaceChildren();
    message("trace-msg", err instanceof ApiError ? err.describe() : String(err));
  }
}

// ------------------------------------------------------------------------------- session
function logout(why) {
  stopObserve();
  if (state.stream) {
    state.stream.abort();
    state.stream = null;
  }
  forgetToken();
  $("app").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
  message("login-msg", why || "");
  $("token").focus();
}

async function enter() {
  const who = await call("GET", "/auth/whoami");
  if (!who.permissions.includes("read")) {
    throw new ApiError(403, { error: `${who.identity} has no role that may read this switch`,
      needs: ["viewer", "operator", "mirror-admin", "admin"] });
  }
  const health = await call("GET", "/health");
  state.switchName = health.switch;
  $("switch-name").textContent = health.switch;
  $("identity").textContent = `${who.identity} (${who.roles.join(", ")})`;
  $("mirror-role").textContent = who.permissions.includes("mirror")
    ? "You may create, enable, disable and delete mirror sessions."
    : "Your role may look but not change mirror sessions (that needs mirror-admin); " +
      "the switch refuses such changes.";
  $("login").hidden = true;
  $("who").hidden = false;
  $("app").hidden = false;
  message("login-msg", "");
  follow();
  offerObserve();
}

async function login(event) {
  event.preventDefault();
  setToken($("token").value.trim());
  $("token").value = "";
  try {
    await enter();
  } catch (err) {
    logout(err instanceof ApiError ? err.describe() : String(err));
  }
}

function start() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => logout("Logged out."));
  $("mirror-form").addEventListener("submit", createMirror);
  $("trace-form").addEventListener("submit", runTrace);
  if (token()) {
    enter().catch((err) => logout(err instanceof ApiError ? err.describe() : String(err)));
  } else {
    $("token").focus();
  }
}

start();
