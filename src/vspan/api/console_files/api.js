// The switch's API as the console uses it: the token in this tab's sessionStorage, sent in
// the Authorization header (never in a URL, never in a cookie), JSON in and out, and the
// server-sent event stream read with fetch (EventSource cannot send the header).

const KEY = "vspan.token";

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  sessionStorage.setItem(KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}

/** An answer that is not 2xx: `status` and the API's JSON body (`error`, `needs`, ...). */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }

  /** One sentence for the page: what was refused or went wrong, and why. */
  describe() {
    const b = this.body;
    if (this.status === 401) {
      return `Not logged in (401): ${b.error}`;
    }
    if (this.status === 403) {
      const said = String(b.error || "").includes("roles");
      const needs = b.needs && !said ? ` Needs one of the roles: ${b.needs.join(", ")}.` : "";
      return `Refused (403): ${b.error}.${needs}`;
    }
    const details = Array.isArray(b.details) ? ` (${b.details.join("; ")})` : "";
    return `Failed (${this.status}): ${b.error}${details}`;
  }
}

function headers(extra) {
  return Object.assign({ Authorization: `Bearer ${token() || ""}` }, extra);
}

/** Call the API; resolves to the JSON answer, rejects with ApiError. */
export async function call(method, path, body) {
  const init = { method, cache: "no-store", credentials: "omit", headers: headers({ Accept: "application/json" }) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: text.slice(0, 200) };
  }
  if (!resp.ok) {
    throw new ApiError(resp.status, data);
  }
  return data;
}

/** Read a server-sent event stream: onEvent(name, data) for each event, until the stream
 * ends or `signal` aborts. Rejects with ApiError when the stream is refused. */
export async function readEvents(path, onEvent, signal) {
  const resp = await fetch(path, { cache: "no-store", credentials: "omit", signal,
                                   headers: headers({ Accept: "text/event-stream" }) });
  if (!resp.ok) {
    let data = null;
    try { data = await resp.json(); } catch { data = null; }
    throw new ApiError(resp.status, data);
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      return;
    }
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) {
          name = line.slice(6).trim();
        } else if (line.startsWith("data:")) {
          data.push(line.slice(5).trimStart());
        }
      }
      if (data.length) {
        onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  }
}
