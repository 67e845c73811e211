/* Article view: the article, its headline variants, and the summary each interest segment
 * gets, side by side. Generation runs one request at a time (the model queue is shared with
 * the apps); cached outputs come back at once. */
"use strict";

(() => {
  const { api, el, showError, clearError, groundingFlag, param } = Studio;
  const $ = (id) => document.getElementById(id);
  const errorRegion = $("article-error");
  let opened = 0;  // a newer article cancels the rest of an older one's work

  function renderArticle(article) {
    $("article-title").textContent = article.title;
    const meta = [article.category || "uncategorised", article.id];
    if (article.published_at) meta.push(new Date(article.published_at).toLocaleString());
    $("article-meta").textContent = meta.join(" · ");
    $("article-body").replaceChildren(
      ...article.body.split(/\n+/).filter(Boolean).map((p) => el("p", {}, p))
    );
    $("article").hidden = $("article-text").hidden = false;
  }

  async function loadHeadlines(id, run) {
    $("variants").hidden = false;
    $("variants-status").textContent = "Writing 3 variants…";
    $("headline-variants").replaceChildren();
    try {
      const result = await api(`/v1/articles/${encodeURIComponent(id)}/headlines`, {
        method: "POST",
        body: { n: 3 },
      });
      if (run !== opened) return;
      for (const headline of result.headlines) {
        $("headline-variants").append(el("li", {}, headline.text, " ", groundingFlag(headline)));
      }
      $("variants-status").textContent = `${result.template} · ${result.model}${result.cached ? " · cached" : ""}`;
    } catch (error) {
      $("variants-status").textContent = Studio.describe(error);
    }
  }

  async function loadSummaries(id, run) {
    $("summaries").hidden = false;
    const grid = $("segment-summaries");
    grid.replaceChildren();
    const { segments } = await api("/v1/segments");
    const cards = segments.map((segment) => {
      const text = el("p", { class: "summary" }, "Waiting…");
      const flag = el("span");
      const card = el(
        "section",
        { class: "card", dataset: { segment: segment.id }, "aria-label": segment.id },
        el("h3", {}, segment.id === "generic" ? "Generic reader" : segment.id),
        el("p", { class: "muted" }, segment.interests.join(", ") || "no personalization"),
        text,
        flag
      );
      grid.append(card);
      return { segment, text, flag };
    });
    $("summaries-status").textContent = `${segments.length} summaries`;
    for (const { segment, text, flag } of cards) {
      if (run !== opened) return;
      text.textContent = "Writing…";
      try {
        const summary = await api(
          `/v1/articles/${encodeURIComponent(id)}/summaries/${encodeURIComponent(segment.id)}`
        );
        text.textContent = summary.summary;
        flag.replaceChildren(groundingFlag(summary), summary.cached ? " cached" : "");
      } catch (error) {
        text.textContent = Studio.describe(error);
      }
    }
  }

  async function open(id) {
    id = id.trim();
    if (!id) return;
    const run = ++opened;
    clearError(errorRegion);
    try {
      renderArticle(await api(`/v1/articles/${encodeURIComponent(id)}`));
      history.replaceState(null, "", `?id=${encodeURIComponent(id)}`);
    } catch (error) {
      for (const part of ["article", "article-text", "variants", "summaries"]) $(part).hidden = true;
      showError(errorRegion, error);
      return;
    }
    try {
      await loadHeadlines(id, run);
      await loadSummaries(id, run);
    } catch (error) {
      showError(errorRegion, error);
    }
  }

  $("article-form").addEventListener("submit", (event) => {
    event.preventDefault();
    open($("article-id").value);
  });
  document.addEventListener("studio:key", () => open($("article-id").value));
  if (param("id")) {
    $("article-id").value = param("id");
    open(param("id"));
  }
})();
