// Renders /openapi.json as a list of operations. Self-contained: no framework, no CDN.
"use strict";

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
};

const resolve = (doc, schema) => {
  while (schema && schema.$ref) schema = schema.$ref.split("/").slice(1).reduce((o, k) => o[k], doc);
  return schema || {};
};

const exampleOf = (doc, content) => {
  const media = content && Object.values(content)[0];
  if (!media) return null;
  if (media.example !== undefined) return media.example;
  const schema = resolve(doc, media.schema);
  return schema.example !== undefined ? schema.example : null;
};

const operation = (doc, path, method, op) => {
  const section = el("section", { class: "operation", id: `${method}-${path}` });
  const title = el("h3", {}, el("span", { class: `method ${method}` }, method.toUpperCase()), " ",
    el("span", { class: "path" + (op.security ? " lock" : "") }, path));
  section.append(title);
  if (op.summary) section.append(el("p", {}, el("strong", {}, op.summary)));
  if (op.description) section.append(el("p", {}, op.description));
  if (op.parameters && op.parameters.length) {
    const rows = op.parameters.map((p) => el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in),
      el("td", {}, p.description || "")));
    section.append(el("h4", {}, "Parameters"), el("table", {}, ...rows));
  }
  if (op.requestBody) {
    section.append(el("h4", {}, "Request body"));
    const example = exampleOf(doc, op.requestBody.content);
    if (example !== null) section.append(el("pre", {}, JSON.stringify(example, null, 2)));
  }
  const responses = Object.entries(op.responses || {}).map(([status, response]) => {
    const example = exampleOf(doc, response.content);
    return el("tr", {}, el("td", {}, el("strong", {}, status)), el("td", {}, response.description || ""),
      el("td", {}, example !== null ? el("pre", {}, JSON.stringify(example, null, 2)) : ""));
  });
  section.append(el("h4", {}, "Responses"), el("table", {}, ...responses));
  return section;
};

const render = (doc) => {
  document.getElementById("title").textContent = `${doc.info.title} ${doc.info.version}`;
  document.getElementById("summary").textContent = `OpenAPI ${doc.openapi}. ${doc.info.description || ""}`;
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(doc, path, method, op));
    }
  }
  // Tags in the order the document declares them.
  const declared = (doc.tags || []).map((tag) => tag.name);
  const rank = (tag) => (declared.includes(tag) ? declared.indexOf(tag) : declared.length);
  const main = document.getElementById("operations");
  for (const tag of [...byTag.keys()].sort((a, b) => rank(a) - rank(b))) {
    main.append(el("h2", {}, tag), ...byTag.get(tag));
  }
  document.body.dataset.rendered = "true";
};

fetch("/openapi.json")
  .then((response) => {
    if (!response.ok) throw new Error(`GET /openapi.json answered ${response.status}`);
    return response.json();
  })
  .then(render)
  .catch((error) => {
    document.getElementById("summary").textContent = `Could not load the API description: ${error.message}`;
    console.error(error);
  });
