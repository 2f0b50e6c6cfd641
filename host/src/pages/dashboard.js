// GET /admin: the plugin dashboard. Reads GET /api/v1/plugins and GET /api/v1/plugins/{id}
// with the admin token the operator pasted in (kept in sessionStorage, sent only in the
// Authorization header) and draws what it finds; a quarantined plugin's card offers
// "Re-enable" (POST /api/v1/plugins/{id}/enable). Every string from the API reaches the page
// as a text node or an attribute value, never as markup.
"use strict";

const TOKEN_KEY = "pixsim7.admin-token";
const SVG = "http://www.w3.org/2000/svg";

/** The states the stylesheet has a colour for; any other state string gets a neutral one. */
const KNOWN_STATES = ["enabled", "disabled", "failed", "quarantined", "skipped", "loaded", "would load"];

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes). */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attributes);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** An SVG element with attributes and children. */
function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  setAttributes(node, attributes);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function setAttributes(node, attributes) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.setAttribute("class", Array.isArray(value) ? value.join(" ") : value);
    else node.setAttribute(name, String(value));
  }
}

/** A CSS class for a state string: `state-<slug>`, plus `state-other` for unknown states. */
function stateClasses(state) {
  const text = String(state ?? "unknown");
  const slug = text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "") || "unknown";
  return KNOWN_STATES.includes(text) ? ["state-" + slug] : ["state-" + slug, "state-other"];
}

function text(value, fallback = "—") {
  return value === null || value === undefined || value === "" ? fallback : String(value);
}

// --- the session -------------------------------------------------------------------------

function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function showSignIn() {
  $("sign-in").hidden = false;
  $("dashboard").hidden = true;
  $("session").hidden = true;
  $("token").value = "";
  $("token").focus();
}

function showMessage(kind, message, status) {
  const box = $("message");
  box.replaceChildren(message);
  box.className = "message " + kind;
  if (status) box.dataset.status = String(status);
  else delete box.dataset.status;
  box.hidden = false;
}

function clearMessage() {
  $("message").hidden = true;
  $("message").replaceChildren();
}

/** What a refused request means to the operator. */
function refusal(status, detail) {
  const said = detail ? ` The server said: “${detail}”.` : "";
  if (status === 401) {
    return "Sign-in failed (401): the server did not accept this token. It may be mistyped, " +
      "expired, or signed with another secret; `pixsim7 token --user-id 1 --admin` prints a new one." + said;
  }
  if (status === 403) {
    return "Access denied (403): this token is valid but does not carry the admin role, " +
      "which the plugin admin API needs." + said;
  }
  return `The admin API answered ${status}.` + said;
}

class ApiError extends Error {
  constructor(status, detail) {
    super(refusal(status, detail));
    this.status = status;
  }
}

/** Sends one admin API request; the parsed JSON body and the response's headers, or an
 * ApiError carrying the status and the server's `detail`. */
async function callApi(method, path, token) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { Authorization: "Bearer " + token, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
  } catch (error) {
    throw new ApiError(0, "the server could not be reached (" + error.message + ")");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : null;
    throw new ApiError(response.status, detail);
  }
  return { body, headers: response.headers };
}

async function getJson(path, token) {
  return (await callApi("GET", path, token)).body;
}

/** What the last "Re-enable" of a plugin came to, by plugin id; shown on its card by the
 * next drawing, then forgotten. */
const outcomes = new Map();

/** "Re-enable": lifts the plugin's quarantine, then redraws everything with the outcome on
 * the plugin's card (the server's detail when it refused). */
async function reenable(id, button) {
  const token = storedToken();
  if (!token) {
    showSignIn();
    return;
  }
  button.disabled = true;
  button.textContent = "Re-enabling…";
  try {
    const { body, headers } = await callApi("POST", "/api/v1/plugins/" + encodeURIComponent(id) + "/enable", token);
    const state = text(body && body.state, "unknown");
    outcomes.set(id, headers.get("x-pixsim7-reenabled") === "false"
      ? { kind: "info", text: `${id} was no longer quarantined; it is ${state}.` }
      : { kind: "success", text: `Re-enabled: ${id} is ${state} and serves its routes again.` });
  } catch (error) {
    outcomes.set(id, { kind: "error", text: "Re-enabling failed. " + error.message, status: error.status || null });
  }
  await load();
}

/** Reads the list, then each plugin's detail (event counters and lag), and draws them. */
async function load() {
  const token = storedToken();
  if (!token) {
    showSignIn();
    return;
  }
  $("refresh").disabled = true;
  try {
    const plugins = await getJson("/api/v1/plugins", token);
    const details = await Promise.all(
      plugins.map((plugin) =>
        plugin.id
          ? getJson("/api/v1/plugins/" + encodeURIComponent(plugin.id), token).catch((error) => ({ error }))
          : Promise.resolve(null),
      ),
    );
    clearMessage();
    render(plugins, details);
    $("sign-in").hidden = true;
    $("dashboard").hidden = false;
    $("session").hidden = false;
    $("updated").textContent = "Updated " + new Date().toLocaleTimeString();
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignIn();
      showMessage("error", error.message, error.status);
    } else {
      showMessage("error", error.message, error.status || null);
    }
  } finally {
    $("refresh").disabled = false;
  }
}

$("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token").value.trim().replace(/^Bearer\s+/i, "");
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  load();
});

$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  outcomes.clear();
  $("plugins").replaceChildren();
  $("graph").replaceChildren();
  $("summary").replaceChildren();
  showSignIn();
  showMessage("info", "Signed out. The token was removed from this tab.");
});

$("refresh").addEventListener("click", () => load());

// --- drawing -----------------------------------------------------------------------------

function render(plugins, details) {
  const ordered = plugins
    .map((plugin, index) => ({ plugin, detail: details[index] }))
    .sort((a, b) => orderKey(a.plugin) - orderKey(b.plugin) || keyOf(a.plugin).localeCompare(keyOf(b.plugin)));
  renderSummary(plugins);
  $("graph").replaceChildren(dependencyGraph(plugins));
  $("plugins").replaceChildren(...ordered.map(({ plugin, detail }) => pluginCard(plugin, detail)));
}

function orderKey(plugin) {
  return typeof plugin.order === "number" ? plugin.order : Number.MAX_SAFE_INTEGER;
}

/** A plugin's node key: its id, or its file when the library has none (no descriptor). */
function keyOf(plugin) {
  return plugin.id || plugin.file || "?";
}

function renderSummary(plugins) {
  // Quarantined is always counted, also at 0: it is the state that asks for an operator.
  const counts = new Map([["quarantined", 0]]);
  for (const plugin of plugins) counts.set(plugin.state, (counts.get(plugin.state) || 0) + 1);
  const tiles = [el("div", { class: "tile total" }, el("strong", {}, String(plugins.length)), el("span", {}, "libraries"))];
  for (const [state, count] of [...counts].sort((a, b) => b[1] - a[1])) {
    tiles.push(
      el("div", { class: ["tile", ...stateClasses(state), count === 0 ? "none" : null].filter(Boolean), "data-state": state, "data-count": count },
        el("strong", {}, String(count)), el("span", {}, text(state))),
    );
  }
  $("summary").replaceChildren(...tiles);
}

function badge(state) {
  return el("span", { class: ["badge", ...stateClasses(state)], "data-field": "state" }, text(state, "unknown"));
}

function fact(label, value, attributes = {}) {
  return [el("dt", {}, label), el("dd", attributes, value)];
}

function chips(items, kind, empty) {
  if (!items || items.length === 0) return el("span", { class: "muted" }, empty);
  return el("ul", { class: "chips" }, ...items.map((item) => el("li", { class: ["chip", kind] }, String(item))));
}

function pluginCard(plugin, detail) {
  const dependencies = plugin.dependencies || [];
  const card = el("article", {
    class: ["plugin", ...stateClasses(plugin.state)],
    "data-plugin-id": plugin.id || "",
    "data-file": plugin.file || "",
    "data-state": plugin.state,
  });
  card.append(
    el("header", {},
      el("div", { class: "names" },
        el("h3", {}, text(plugin.name || plugin.id || plugin.file)),
        el("code", { class: "plugin-id", "data-field": "id" }, text(plugin.id, "no id"))),
      badge(plugin.state)),
  );
  const outcome = plugin.id ? outcomes.get(plugin.id) : undefined;
  if (outcome) {
    outcomes.delete(plugin.id);
    card.append(el("p", {
      class: ["outcome", outcome.kind],
      role: "status",
      "data-field": "outcome",
      "data-kind": outcome.kind,
      "data-status": outcome.status,
    }, outcome.text));
  }
  if (plugin.state === "quarantined" && plugin.id) card.append(quarantinePanel(plugin));
  else if (plugin.reason) card.append(el("p", { class: "reason", "data-field": "reason" }, String(plugin.reason)));
  if (plugin.description) card.append(el("p", { class: "description" }, String(plugin.description)));

  card.append(
    el("dl", { class: "facts" },
      ...fact("Version", text(plugin.version), { "data-field": "version" }),
      ...fact("Load order", text(plugin.order, "not loaded"), { "data-field": "order" }),
      ...fact("File", el("code", {}, text(plugin.file))),
      ...fact("SHA-256", el("code", { class: "hash" }, text(plugin.sha256, "unknown")), { "data-field": "sha256" }),
      ...fact("ABI", text(plugin.abi_version)),
      ...fact("Depends on", dependencies.length === 0
        ? el("span", { class: "muted" }, "nothing")
        : el("ul", { class: "chips" }, ...dependencies.map((d) =>
          el("li", { class: "chip dependency" }, d.requirement ? `${d.id} ${d.requirement}` : d.id))),
      { "data-field": "dependencies" }),
    ),
  );

  const routes = plugin.routes || [];
  card.append(
    el("h4", {}, `Routes (${routes.length})`),
    routes.length === 0
      ? el("p", { class: "muted" }, "none")
      : el("ul", { class: "routes", "data-field": "routes" }, ...routes.map((route) =>
        el("li", {},
          el("span", { class: ["method", "method-" + String(route.method).toLowerCase().replace(/[^a-z]/g, "")] }, text(route.method)),
          el("code", {}, text(route.path)),
          el("span", { class: ["access", "access-" + String(route.access).replace(/[^a-z]/g, "")] }, text(route.access))))),
  );

  card.append(
    el("h4", {}, "Permissions"),
    el("div", { class: "permissions" },
      el("div", {}, el("span", { class: "label" }, "granted"), chips(plugin.granted_permissions, "granted", "none")),
      el("div", {}, el("span", { class: "label" }, "denied"), chips(plugin.denied_permissions, "denied", "none"))),
  );

  card.append(el("h4", {}, "Events"), eventsSection(plugin, detail));
  return card;
}

/** A quarantined plugin's why and since, and the button that lifts the quarantine. */
function quarantinePanel(plugin) {
  const since = typeof plugin.quarantined_since === "number" ? new Date(plugin.quarantined_since * 1000) : null;
  const button = el("button", { type: "button", class: "reenable", "aria-label": `Re-enable ${plugin.id}` }, "Re-enable");
  button.addEventListener("click", () => reenable(plugin.id, button));
  return el("section", { class: "quarantine", "data-field": "quarantine" },
    el("div", { class: "quarantine-head" },
      el("div", {},
        el("strong", {}, "Quarantined"),
        " since ",
        since
          ? el("time", { datetime: since.toISOString(), "data-field": "quarantined-since" }, since.toLocaleString())
          : el("span", { class: "muted", "data-field": "quarantined-since" }, "an unknown time")),
      button),
    el("p", { class: "reason", "data-field": "reason" }, text(plugin.reason, "no reason given")),
    el("p", { class: "hint" }, "Its routes answer 503 until it is re-enabled; fix the cause first, or it will be quarantined again."),
  );
}

function eventsSection(plugin, detail) {
  const section = el("div", { class: "events" });
  const subscribed = plugin.subscriptions || [];
  section.append(
    el("div", {}, el("span", { class: "label" }, "emits"), chips(plugin.emits, "topic", "nothing")),
    el("div", {}, el("span", { class: "label" }, "subscribes"), chips(subscribed, "topic", "nothing"),
      subscribed.length > 0
        ? el("span", { class: ["delivery", plugin.subscriptions_active ? "active" : "inactive"] },
          plugin.subscriptions_active ? "receiving" : "not receiving")
        : null),
  );
  if (!plugin.id) return section;
  if (!detail || detail.error) {
    section.append(el("p", { class: "muted" }, "Counters unavailable: " + text(detail && detail.error && detail.error.message)));
    return section;
  }
  const counters = Object.entries(detail.events || {});
  if ("event_lag" in detail) {
    section.append(el("p", { class: "lag", "data-field": "event-lag" },
      "Pending events (lag): ", el("strong", {}, detail.event_lag === null ? "unknown right now" : String(detail.event_lag))));
  }
  if (counters.length === 0) {
    section.append(el("p", { class: "muted" }, "No events counted since the server started."));
    return section;
  }
  section.append(
    el("table", { class: "counters", "data-field": "counters" },
      el("thead", {}, el("tr", {}, el("th", {}, "Topic"), el("th", {}, "Emitted"), el("th", {}, "Delivered"), el("th", {}, "Failed"))),
      el("tbody", {}, ...counters.map(([topic, count]) =>
        el("tr", { "data-topic": topic },
          el("td", {}, el("code", {}, topic)),
          el("td", { "data-counter": "emitted" }, text(count.emitted, "0")),
          el("td", { "data-counter": "delivered" }, text(count.delivered, "0")),
          el("td", { "data-counter": "failed", class: count.failed > 0 ? "bad" : null }, text(count.failed, "0")))))),
  );
  return section;
}

// --- the dependency graph ----------------------------------------------------------------

const NODE_HEIGHT = 46;
const ROW_GAP = 18;
const COLUMN_GAP = 96;
const MARGIN = 24;

/** Nodes per plugin in columns by dependency depth, one edge per declared dependency. */
function dependencyGraph(plugins) {
  const nodes = new Map();
  for (const plugin of plugins) {
    const key = nodes.has(keyOf(plugin)) ? plugin.file : keyOf(plugin);
    nodes.set(key, { key, plugin, dependencies: plugin.dependencies || [] });
  }
  const edges = [];
  for (const node of [...nodes.values()]) {
    for (const dependency of node.dependencies) {
      if (!nodes.has(dependency.id)) {
        nodes.set(dependency.id, { key: dependency.id, plugin: null, dependencies: [] });
      }
      edges.push({ from: node, to: nodes.get(dependency.id), requirement: dependency.requirement || "" });
    }
  }

  // Depth: 0 without dependencies, else one more than the deepest dependency (a cycle is
  // cut where it closes).
  const depth = new Map();
  const visiting = new Set();
  const depthOf = (node) => {
    if (depth.has(node.key)) return depth.get(node.key);
    if (visiting.has(node.key)) return -1;
    visiting.add(node.key);
    let deepest = -1;
    for (const dependency of node.dependencies) deepest = Math.max(deepest, depthOf(nodes.get(dependency.id)));
    visiting.delete(node.key);
    depth.set(node.key, deepest + 1);
    return deepest + 1;
  };
  const columns = [];
  for (const node of nodes.values()) {
    const column = depthOf(node);
    (columns[column] ||= []).push(node);
  }

  // Rows: the first column by key, the next ones by the mean row of their dependencies.
  const row = new Map();
  columns.forEach((column, index) => {
    const weight = (node) => {
      const rows = node.dependencies.map((d) => row.get(nodes.get(d.id).key)).filter((r) => r !== undefined);
      return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Infinity;
    };
    column.sort((a, b) => (index === 0 ? 0 : weight(a) - weight(b)) || a.key.localeCompare(b.key));
    column.forEach((node, position) => row.set(node.key, position));
  });

  const widths = columns.map((column) => Math.max(150, ...column.map((node) => labelWidth(node))));
  const x = [];
  widths.reduce((left, width, index) => ((x[index] = left), left + width + COLUMN_GAP), MARGIN);
  const tallest = Math.max(1, ...columns.map((column) => column.length));
  const width = MARGIN * 2 + widths.reduce((a, b) => a + b, 0) + COLUMN_GAP * Math.max(0, widths.length - 1);
  const height = MARGIN * 2 + tallest * NODE_HEIGHT + (tallest - 1) * ROW_GAP + 30;
  for (const node of nodes.values()) {
    const column = depth.get(node.key);
    const columnHeight = columns[column].length * (NODE_HEIGHT + ROW_GAP) - ROW_GAP;
    node.x = x[column];
    node.width = widths[column];
    node.y = MARGIN + 30 + (height - MARGIN * 2 - 30 - columnHeight) / 2 + row.get(node.key) * (NODE_HEIGHT + ROW_GAP);
    node.column = column;
  }

  const picture = svg("svg", {
    class: "dependency-graph",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": `Dependency graph: ${nodes.size} plugins, ${edges.length} dependencies`,
    "data-nodes": nodes.size,
    "data-edges": edges.length,
  });
  picture.append(
    svg("defs", {},
      marker("arrow", "arrow-head"),
      marker("arrow-broken", "arrow-head broken")),
  );
  columns.forEach((_, index) =>
    picture.append(svg("text", { class: "column-label", x: x[index], y: MARGIN + 8 }, `depth ${index}`)));

  const edgeLayer = svg("g", { class: "edges" });
  for (const edge of edges) {
    const available = edge.to.plugin && ["enabled", "loaded", "would load"].includes(edge.to.plugin.state);
    edgeLayer.append(
      svg("path", {
        class: ["edge", available ? null : "broken"].filter(Boolean),
        d: edgePath(edge.from, edge.to),
        "marker-end": available ? "url(#arrow)" : "url(#arrow-broken)",
        "data-from": edge.from.key,
        "data-to": edge.to.key,
        "data-requirement": edge.requirement,
      }, svg("title", {}, `${edge.from.key} depends on ${edge.to.key}${edge.requirement ? " " + edge.requirement : ""}`)),
    );
  }
  picture.append(edgeLayer);

  const nodeLayer = svg("g", { class: "nodes" });
  for (const node of nodes.values()) {
    const state = node.plugin ? node.plugin.state : "missing";
    const group = svg("g", {
      class: ["node", ...(node.plugin ? stateClasses(state) : ["missing"])],
      transform: `translate(${node.x}, ${node.y})`,
      "data-plugin-id": node.key,
      "data-state": state,
    });
    const meta = node.plugin ? `${text(node.plugin.version, "?")} · ${text(state)}` : "not installed";
    group.append(
      svg("title", {}, node.plugin && node.plugin.reason ? `${node.key}: ${node.plugin.reason}` : node.key),
      svg("rect", { width: node.width, height: NODE_HEIGHT, rx: 9 }),
      svg("circle", { class: "dot", cx: 14, cy: NODE_HEIGHT / 2, r: 5 }),
      svg("text", { class: "node-id", x: 26, y: 19 }, node.key),
      svg("text", { class: "node-meta", x: 26, y: 35 }, meta),
    );
    nodeLayer.append(group);
  }
  picture.append(nodeLayer);
  return picture;
}

function marker(id, className) {
  return svg("marker", {
    id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
  }, svg("path", { class: className, d: "M0,0 L10,5 L0,10 z" }));
}

/** About 7 px per character of the 12.5 px labels, plus the dot and padding. */
function labelWidth(node) {
  const meta = node.plugin ? `${text(node.plugin.version, "?")} · ${text(node.plugin.state)}` : "not installed";
  return 40 + 7.4 * Math.max(node.key.length, meta.length * 0.9);
}

/** A dependent's left side to its dependency's right side (to the left); an arc over the
 * top when a cycle puts the dependency in the same column or to the right. */
function edgePath(from, to) {
  if (to.column < from.column) {
    const x1 = from.x, y1 = from.y + NODE_HEIGHT / 2;
    const x2 = to.x + to.width, y2 = to.y + NODE_HEIGHT / 2;
    const bend = Math.max(30, (x1 - x2) / 2);
    return `M${x1},${y1} C${x1 - bend},${y1} ${x2 + bend},${y2} ${x2},${y2}`;
  }
  const x1 = from.x + from.width / 2, y1 = from.y;
  const x2 = to.x + to.width / 2 + (to === from ? 20 : 0), y2 = to.y;
  const lift = 28 + Math.abs(from.y - to.y) / 4;
  return `M${x1},${y1} C${x1},${Math.min(y1, y2) - lift} ${x2},${Math.min(y1, y2) - lift} ${x2},${y2}`;
}

// --- start -------------------------------------------------------------------------------

if (storedToken()) load();
else showSignIn();
