// The trace form: the body of POST /trace from the form's fields, and the answer shown as
// `vspan trace` prints it: the frame, every stage's line (nested as the stages nest), the
// verdict.

const $ = (id) => document.getElementById(id);

/** The request body: the hex frame when given, else the frame's fields. */
export function traceBody() {
  const port = $("t-port").value;
  const hex = $("t-frame").value.replace(/[\s:]/g, "");
  if (hex) {
    return { port, frame: hex };
  }
  const packet = {
    src_mac: $("t-src-mac").value.trim(),
    dst_mac: $("t-dst-mac").value.trim(),
    sport: Number($("t-sport").value || 12345),
    dport: Number($("t-dport").value || 80),
    flags: $("t-flags").value.trim(),
  };
  for (const [key, id] of [["src_ip", "t-src-ip"], ["dst_ip", "t-dst-ip"]]) {
    if ($(id).value.trim()) {
      packet[key] = $(id).value.trim();
    }
  }
  if ($("t-proto").value) {
    packet.proto = $("t-proto").value;
  }
  const vlan = $("t-vlan").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (vlan.length) {
    packet.vlan = vlan.map(Number);
  }
  return { port, packet };
}

function stages(nodes) {
  const list = document.createElement("ol");
  list.className = "stages";
  for (const n of nodes) {
    const li = document.createElement("li");
    const stage = document.createElement("span");
    stage.className = "stage";
    stage.textContent = n.stage;
    const msg = document.createElement("span");
    msg.className = "stage-msg";
    msg.textContent = ` ${n.message}`;
    li.append(stage, msg);
    if (n.children && n.children.length) {
      li.append(stages(n.children));
    }
    list.append(li);
  }
  return list;
}

/** Show a /trace answer in `box`. */
export function showTrace(box, result) {
  const head = document.createElement("p");
  head.textContent = `trace: ${result.frame_len}-byte frame into port ${result.port}`;
  const verdict = document.createElement("p");
  verdict.className = "verdict";
  verdict.textContent = result.verdict;
  const text = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = "as text";
  const pre = document.createElement("pre");
  pre.textContent = result.text;
  text.append(summary, pre);
  box.replaceChildren(head, stages(result.trace), verdict, text);
}
