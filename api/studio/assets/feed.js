/* Feed preview: a reader's feed with each item's explanation. "Read" and "Dismiss" send the
 * reader's event, exactly as an app would, and the feed is asked for again. */
"use strict";

(() => {
  const { api, el, showError, clearError, articleLink, param } = Studio;
  const $ = (id) => document.getElementById(id);
  const errorRegion = $("feed-error");
  const status = $("feed-status");
  const list = $("feed-items");
  let reader = "";

  async function loadExamples() {
    try {
      const { readers } = await api("/v1/example-readers");
      $("example-readers").replaceChildren(...readers.map((r) => el("option", { value: r })));
      const hint = $("example-list");
      hint.replaceChildren();
      if (!readers.length) return;
      hint.append("Try a reader: ");
      readers.slice(0, 5).forEach((id, i) => {
        const button = el("button", { type: "button", class: "link" }, id);
        button.addEventListener("click", () => {
          $("reader").value = id;
          loadFeed(id);
        });
        hint.append(i ? " · " : "", button);
      });
    } catch (error) {
      /* examples are a convenience; the feed itself reports auth errors */
    }
  }

  function explanationOf(item) {
    const why = item.explanation;
    const node = el("div", { class: "why" }, el("p", {}, why.text));
    if (why.because_you_read) {
      const ref = why.because_you_read;
      node.append(
        el("p", { class: "muted" }, "Closest article they read: ",
           articleLink(ref.id, ref.title), ` (similarity ${ref.similarity.toFixed(2)})`)
      );
    }
    if (why.signals.length) {
      node.append(
        el("ul", { class: "chips", "aria-label": "Signals that raised it" },
           why.signals.map((s) => el("li", {}, s.replaceAll("_", " "))))
      );
    }
    return node;
  }

  function render(feed) {
    list.replaceChildren();
    for (const item of feed.items) {
      const read = el("button", { type: "button", class: "small", "aria-label": `Mark “${item.title}” as read` }, "Read");
      const dismiss = el("button", { type: "button", class: "small", "aria-label": `Dismiss “${item.title}”` }, "Dismiss");
      const node = el(
        "li",
        { dataset: { id: item.id } },
        el("div", { class: "item-head" }, articleLink(item.id, item.title)),
        el(
          "p",
          { class: "muted" },
          `${item.category || "uncategorised"} · score ${item.score.toFixed(3)} · click probability ${item.click_probability.toFixed(3)}`
        ),
        explanationOf(item),
        el("div", { class: "toolbar" }, read, dismiss)
      );
      read.addEventListener("click", () => sendEvent(item, "click", node));
      dismiss.addEventListener("click", () => sendEvent(item, "dismiss", node));
      list.append(node);
    }
    status.textContent =
      `${feed.items.length} items from ${feed.candidates} candidates` +
      (feed.cold_start ? " · new reader: fresh and popular items" : "");
  }

  async function loadFeed(id) {
    reader = id.trim();
    if (!reader) return;
    clearError(errorRegion);
    status.textContent = "Loading…";
    const query = new URLSearchParams({ k: $("feed-k").value, exclude_read: "true" });
    if ($("feed-category").value.trim()) query.set("category", $("feed-category").value.trim());
    try {
      render(await api(`/v1/users/${encodeURIComponent(reader)}/feed?${query}`));
      history.replaceState(null, "", `?user=${encodeURIComponent(reader)}`);
    } catch (error) {
      status.textContent = "";
      list.replaceChildren();
      showError(errorRegion, error);
    }
  }

  async function sendEvent(item, type, node) {
    clearError(errorRegion);
    node.querySelectorAll("button").forEach((b) => (b.disabled = true));
    status.textContent = `Sending ${type === "click" ? "read" : "dismiss"}…`;
    try {
      await api("/v1/events", {
        method: "POST",
        body: { event_id: crypto.randomUUID(), user_id: reader, article_id: item.id, type },
      });
      node.remove();  // read and dismissed items leave the feed; the new feed confirms it
      status.textContent = `${type === "click" ? "Read" : "Dismissed"}: ${item.title}. Updating…`;
      await loadFeed(reader);
    } catch (error) {
      node.querySelectorAll("button").forEach((b) => (b.disabled = false));
      showError(errorRegion, error);
    }
  }

  $("feed-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadFeed($("reader").value);
  });
  document.addEventListener("studio:key", loadExamples);
  loadExamples();
  if (param("user")) {
    $("reader").value = param("user");
    loadFeed(param("user"));
  }
})();
