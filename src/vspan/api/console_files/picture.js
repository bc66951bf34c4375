// The picture of the switch: ports down the left, one lane per mirror session, arrows from
// the session's sources into its lane and from the lane to where its copies go (ports, or
// an RSPAN VLAN / ERSPAN target outside the switch). Built with DOM calls (no markup from
// data), styled by classes (the CSP allows no inline style).

const NS = "http://www.w3.org/2000/svg";
const PORT_W = 250;
const PORT_H = 34;
const GAP = 14;
const TOP = 56;
const LANE_0 = 330;
const LANE_W = 120;
const EXT_W = 210;

function el(name, attrs, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) {
    node.setAttribute(k, String(v));
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** A key that changes when the picture would (not when only counters do). */
export function pictureKey(name, ports, mirrors) {
  return JSON.stringify([name, ports.map((p) => [p.name, p.vlan, p.link, p.role]),
    mirrors.map((m) => [m.name, m.enabled, m.sources, m.destinations])]);
}

function sourcePort(text) {
  const i = text.lastIndexOf(":");
  return i > 0 && !text.startsWith("rspan:") ? [text.slice(0, i), text.slice(i + 1)] : [text, ""];
}

/** The SVG element for the switch `name` with `ports` and `mirrors` (API views). */
export function drawSwitch(name, ports, mirrors) {
  const y = new Map();
  ports.forEach((p, i) => y.set(p.name, TOP + i * (PORT_H + GAP)));
  const external = [];
  for (const m of mirrors) {
    for (const d of m.destinations) {
      if (!y.has(d) && !external.includes(d)) {
        external.push(d);
      }
    }
  }
  const lanesEnd = LANE_0 + Math.max(mirrors.length, 1) * LANE_W;
  const width = lanesEnd + (external.length ? EXT_W + 30 : 20);
  const height = TOP + Math.max(ports.length, external.length, 1) * (PORT_H + GAP) + 20;
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-labelledby": "pic-title pic-desc", class: "switch-picture" });
  svg.append(el("title", { id: "pic-title" }, `Switch ${name}: ports and mirror sessions`));
  const lines = [];
  const defs = el("defs");
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(el("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
  defs.append(marker);
  svg.append(defs);
  svg.append(el("rect", { x: 8, y: 8, width: lanesEnd - 8, height: height - 16, rx: 10,
    class: "fabric" }));
  svg.append(el("text", { x: 20, y: 32, class: "fabric-label" }, `switch ${name}`));

  for (const p of ports) {
    const g = el("g", { class: `port link-${p.link}`, "data-port": p.name });
    g.append(el("rect", { x: 20, y: y.get(p.name), width: PORT_W, height: PORT_H, rx: 5 }));
    g.append(el("text", { x: 30, y: y.get(p.name) + 22, class: "port-name" }, p.name));
    g.append(el("text", { x: PORT_W + 12, y: y.get(p.name) + 22, class: "port-vlan",
      "text-anchor": "end" }, p.vlan));
    svg.append(g);
    lines.push(`port ${p.name} (${p.vlan}, link ${p.link})`);
  }
  const extY = new Map();
  external.forEach((d, i) => extY.set(d, TOP + i * (PORT_H + GAP)));
  for (const d of external) {
    const g = el("g", { class: "external" });
    g.append(el("rect", { x: lanesEnd + 20, y: extY.get(d), width: EXT_W, height: PORT_H, rx: 5 }));
    g.append(el("text", { x: lanesEnd + 30, y: extY.get(d) + 22 }, d));
    svg.append(g);
  }

  mirrors.forEach((m, i) => {
    const x = LANE_0 + i * LANE_W + LANE_W / 2;
    const g = el("g", { class: `session ${m.enabled ? "enabled" : "disabled"}`,
      "data-session": m.name });
    g.append(el("text", { x, y: TOP - 14, "text-anchor": "middle", class: "session-name" },
      m.name + (m.enabled ? "" : " (off)")));
    const ys = [];
    for (const s of m.sources) {
      const [port, dir] = sourcePort(s);
      if (!y.has(port)) {
        continue;
      }
      const py = y.get(port) + PORT_H / 2;
      ys.push(py);
      g.append(el("path", { d: `M${20 + PORT_W},${py} H${x}`, class: "copy-from" }));
      g.append(el("text", { x: 20 + PORT_W + 6, y: py - 4, class: "dir" }, dir));
    }
    const dests = [];
    for (const d of m.destinations) {
      const dy = (y.has(d) ? y.get(d) : extY.get(d)) + PORT_H / 2 + 6;
      ys.push(dy);
      const end = y.has(d) ? 20 + PORT_W : lanesEnd + 20;
      g.append(el("path", { d: `M${x},${dy} H${end}`, class: "copy-to", "marker-end": "url(#arrow)",
        "data-dest": d }));
      dests.push(d);
    }
    if (ys.length) {
      g.append(el("path", { d: `M${x},${Math.min(...ys)} V${Math.max(...ys)}`, class: "lane" }));
    }
    svg.append(g);
    lines.push(`session ${m.name} (${m.enabled ? "enabled" : "disabled"}) copies ` +
      `${m.sources.join(", ")} to ${dests.join(", ")}`);
  });
  svg.insertBefore(el("desc", { id: "pic-desc" }, lines.join("; ")), defs);
  return svg;
}
