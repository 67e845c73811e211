/* Newsroom studio: what every page shares. Plain JavaScript, no build step, no CDN.
 *
 * Data is always put on the page with textContent (never innerHTML): an article's text is the
 * newsroom's material, not markup, and the page's Content-Security-Policy backs this up. */
"use strict";

const Studio = (() => {
  const KEY_STORAGE = "newsroom.apiKey";

  class ApiError extends Error {
    constructor(status, code, message, field) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field;
    }
  }

  /** el("li", {class: "x", dataset: {id: "1"}}, "text", child) */
  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "dataset") Object.assign(node.dataset, value);
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function key() {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  }

  /** Call the JSON API with the session's key; errors become ApiError with the API's message. */
  async function api(path, { method = "GET", body, accept = "application/json" } = {}) {
    const headers = { Accept: accept };
    if (key()) headers.Authorization = `Bearer ${key()}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (networkError) {
      throw new ApiError(0, "network", "The Newsroom API did not answer. Is the server running?");
    }
    if (!response.ok) throw await errorOf(response);
    if (accept === "text/event-stream") return response;
    if (response.status === 204) return null;
    return response.json();
  }

  async function errorOf(response) {
    let code = "error";
    let message = `${response.status} ${response.statusText}`;
    let field = null;
    try {
      const envelope = (await response.json()).error;
      if (envelope) ({ code, message, field } = envelope);
    } catch (notJson) {
      /* keep the status line */
    }
    if (response.status === 503 && response.headers.get("Retry-After")) {
      message += ` Try again in ${response.headers.get("Retry-After")} s.`;
    }
    return new ApiError(response.status, code, message, field);
  }

  /** What to tell the person, by status: what happened and what to do about it. */
  function describe(error) {
    if (!(error instanceof ApiError)) return `Something went wrong: ${error.message || error}`;
    if (error.status === 401) return `${error.message}. Enter an API key at the top of the page.`;
    if (error.status === 403) {
      return `${error.message}. Use a key with that role (the admin key works everywhere).`;
    }
    return error.message;
  }

  /** Show an error in a page's alert region (role="alert", so screen readers announce it). */
  function showError(region, error) {
    region.textContent = describe(error);
    region.hidden = false;
  }

  function clearError(region) {
    region.textContent = "";
    region.hidden = true;
  }

  /** Read a text/event-stream response: onEvent(name, data) for each event. */
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let boundary;
      while ((boundary = buffered.indexOf("\n\n")) >= 0) {
        const frame = buffered.slice(0, boundary);
        buffered = buffered.slice(boundary + 2);
        let name = "message";
        const data = [];
        for (const line of frame.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  }

  /** Copy text; where the clipboard is not allowed, select it so the person can copy. */
  async function copy(text, button, fallbackNode) {
    const label = button.textContent;
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch (denied) {
      if (fallbackNode) window.getSelection().selectAllChildren(fallbackNode);
      button.textContent = "Selected: press Ctrl+C";
    }
    setTimeout(() => (button.textContent = label), 2000);
  }

  /** A horizontal bar chart as inline SVG: rows [{label, value}], values in [0, max]. */
  function barChart(rows, { max, format = (v) => v.toFixed(3), title }) {
    const ns = "http://www.w3.org/2000/svg";
    const rowHeight = 26;
    const labelWidth = 120;
    const width = 400;
    const height = rows.length * rowHeight + 8;
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("class", "chart");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", title);
    const top = max || Math.max(...rows.map((r) => r.value), 1e-9);
    rows.forEach((row, i) => {
      const y = i * rowHeight + 4;
      const barWidth = Math.max(1, ((width - labelWidth - 60) * row.value) / top);
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", labelWidth - 8);
      label.setAttribute("y", y + 16);
      label.setAttribute("text-anchor", "end");
      label.textContent = row.label;
      const bar = document.createElementNS(ns, "rect");
      bar.setAttribute("x", labelWidth);
      bar.setAttribute("y", y + 3);
      bar.setAttribute("width", barWidth);
      bar.setAttribute("height", rowHeight - 8);
      bar.setAttribute("class", row.highlight ? "bar highlight" : "bar");
      const value = document.createElementNS(ns, "text");
      value.setAttribute("x", labelWidth + barWidth + 6);
      value.setAttribute("y", y + 16);
      value.textContent = format(row.value);
      svg.append(label, bar, value);
    });
    return svg;
  }

  /** A table from column names and rows of cells. */
  function table(caption, columns, rows) {
    const wide = el(
      "table",
      {},
      el("caption", { text: caption }),
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", text: c })))),
      el(
        "tbody",
        {},
        rows.map((cells) =>
          el("tr", {}, cells.map((cell, i) => el(i ? "td" : "th", i ? {} : { scope: "row" }, cell)))
        )
      )
    );
    // A wide table scrolls inside its box instead of widening the page on a phone.
    return el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption }, wide);
  }

  /** A grounding flag: what the guard said about one generated text. */
  function groundingFlag(generated) {
    if (generated.fallback_reason) {
      // A disclosure rather than a tooltip: keyboard and touch users can open it too.
      return el(
        "details",
        { class: "why-extract" },
        el("summary", { class: "flag warn" }, "extract"),
        el("span", { class: "muted" }, generated.fallback_reason)
      );
    }
    return el("span", { class: "flag ok" }, generated.grounded ? "grounded" : "unchecked");
  }

  function articleLink(id, title) {
    return el("a", { href: `/studio/article?id=${encodeURIComponent(id)}` }, title || id);
  }

  function param(name) {
    return new URLSearchParams(window.location.search).get(name) || "";
  }

  async function setUpKeyForm() {
    const form = document.getElementById("key-form");
    const input = document.getElementById("api-key");
    const status = document.getElementById("key-status");
    let required = true;
    try {
      const health = await (await fetch("/healthz")).json();
      required = health.keys_required;
    } catch (unreachable) {
      /* show the key form anyway */
    }
    if (!required) return;
    form.hidden = false;
    status.textContent = key() ? "Key set for this tab." : "Enter a key to use the studio.";
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      sessionStorage.setItem(KEY_STORAGE, value);
      input.value = "";
      status.textContent = "Key set for this tab.";
      document.dispatchEvent(new CustomEvent("studio:key"));
    });
    document.getElementById("key-forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORAGE);
      status.textContent = "Key forgotten.";
    });
  }

  function markCurrentPage() {
    for (const link of document.querySelectorAll(".top nav a")) {
      if (link.getAttribute("href") === window.location.pathname) link.setAttribute("aria-current", "page");
    }
  }

  markCurrentPage();
  setUpKeyForm();

  return {
    ApiError, api, barChart, describe, clearError, copy, el, groundingFlag, articleLink, param,
    readEvents, showError, table,
  };
})();
