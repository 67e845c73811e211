/* Article view: the article, its headline variants, and the summary each interest segment
 * gets, side by side. Generation runs one request at a time (the model queue is shared with
 * the apps); cached outputs come back at once. The headline-test panel (cms or admin key) is
 * loaded when it is opened: starting a test, each variant's counts and P(best), locking one. */
"use strict";

(() => {
  const { api, el, showError, clearError, groundingFlag, param, describe, ApiError } = Studio;
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

  // --- headline tests -------------------------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  const testsPanel = $("headline-tests");
  const testsError = $("headline-tests-error");
  const testForm = $("headline-test-form");
  const testFormError = $("headline-test-form-error");
  const percent = (v, digits = 1) => `${(100 * v).toFixed(digits)}%`;
  let testsArticle = "";  // the article the panel is about

  function showTestsPanel(id) {
    testsArticle = id;
    testsPanel.hidden = false;
    $("headline-test-list").replaceChildren();
    $("ht-list-status").textContent = "";
    clearError(testsError);
    if (testsPanel.open) loadTests();
  }

  async function loadTests() {
    const id = testsArticle;
    if (!id) return;
    clearError(testsError);
    $("ht-list-status").textContent = "Loading…";
    try {
      const { tests } = await api(`/v1/articles/${encodeURIComponent(id)}/headline-tests`);
      if (id === testsArticle) renderTests(tests);
    } catch (error) {
      $("ht-list-status").textContent = "";
      showError(testsError, error);
    }
  }

  function renderTests(tests) {
    const live = tests.some((t) => t.status !== "stopped");
    testForm.hidden = live;  // one running or locked test per article
    $("ht-list-status").textContent = tests.length
      ? `${tests.length} test${tests.length > 1 ? "s" : ""}, newest first` +
        (live ? ". Stop the live one to start another." : ".")
      : "No headline test yet: start one below.";
    $("headline-test-list").replaceChildren(...[...tests].reverse().map(testCard));
  }

  function pBestBar(p) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 100 10");
    svg.setAttribute("class", "pbest");
    svg.setAttribute("aria-hidden", "true");  // the percentage beside it says the same
    for (const [cls, width] of [["track", 100], ["bar", Math.max(0, Math.min(1, p)) * 100]]) {
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("class", cls);
      rect.setAttribute("width", width);
      rect.setAttribute("height", 10);
      svg.append(rect);
    }
    return svg;
  }

  function testCard(test) {
    const live = test.status !== "stopped";
    const error = el("p", { class: "error", role: "alert", hidden: true });
    const rows = test.variants.map((v) => {
      const winner = test.winner === v.variant_id && test.status === "locked";
      let action = "";
      if (winner) action = el("span", { class: "flag ok" }, "locked: everyone sees it");
      else if (live) {
        action = el("button", { type: "button", class: "small", "aria-label": `Lock ${v.variant_id}: ${v.text}` },
          test.status === "locked" ? "Lock this instead" : "Lock");
        action.addEventListener("click", () => lock(test, v.variant_id, error, action));
      }
      return el(
        "tr", { dataset: { variant: v.variant_id }, class: winner ? "winner" : null },
        el("th", { scope: "row" }, v.text, " ", el("span", { class: "flag" }, v.source)),
        el("td", {}, v.impressions.toLocaleString()),
        el("td", {}, v.clicks.toLocaleString()),
        el("td", {}, percent(v.ctr, 2)),
        el("td", { class: "p-best" }, pBestBar(v.p_best), percent(v.p_best, 0)),
        el("td", {}, action)
      );
    });
    const caption = `Variants of ${test.test_id}`;
    const tools = el("div", { class: "toolbar" });
    if (test.status === "running") {
      const best = el("button", { type: "button", class: "small" }, "Lock the best");
      best.addEventListener("click", () => lock(test, null, error, best));
      tools.append(best);
    }
    if (live) {
      const stop = el("button", { type: "button", class: "small danger" }, "Stop test");
      stop.addEventListener("click", () => stopTest(test, error, stop));
      tools.append(stop);
    }
    return el(
      "section",
      { class: "headline-test card", dataset: { test: test.test_id, status: test.status }, "aria-label": caption },
      el("h3", {}, `${test.test_id} · `, el("span", { class: `flag ${live ? "ok" : "warn"}` }, test.status)),
      el("p", { class: "muted" }, `started ${new Date(test.created_at).toLocaleString()}`),
      error,
      el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
        el("table", {},
          el("caption", {}, caption),
          el("thead", {}, el("tr", {}, ["Headline", "Shown to", "Clicked by", "CTR", "P(best)", ""].map(
            (c) => el("th", { scope: "col" }, c)))),
          el("tbody", {}, rows))),
      tools
    );
  }

  async function lock(test, variantId, error, button) {
    clearError(error);
    button.disabled = true;
    try {
      await api(`/v1/headline-tests/${encodeURIComponent(test.test_id)}/lock`, {
        method: "POST",
        body: variantId ? { variant_id: variantId } : undefined,
      });
      await loadTests();
    } catch (failure) {
      showError(error, failure);
      button.disabled = false;
    }
  }

  async function stopTest(test, error, button) {
    if (!window.confirm(`Stop ${test.test_id}? Readers see the article's own title again; the counts stay.`)) return;
    clearError(error);
    button.disabled = true;
    try {
      await api(`/v1/headline-tests/${encodeURIComponent(test.test_id)}/stop`, { method: "POST" });
      await loadTests();
    } catch (failure) {
      showError(error, failure);
      button.disabled = false;
    }
  }

  function clearFieldErrors() {
    clearError(testFormError);
    for (const node of testForm.querySelectorAll(".field-error")) node.remove();
    for (const node of testForm.querySelectorAll("[aria-invalid]")) {
      node.removeAttribute("aria-invalid");
      node.removeAttribute("aria-describedby");
    }
  }

  /** A 422 by the field it names; `variants[2]` is the third headline typed (blank lines skipped). */
  function showTestFormError(error, lines) {
    const field = error instanceof ApiError && error.status === 422 ? error.field || "" : "";
    const control = [...testForm.querySelectorAll("[data-field]")].find(
      (node) => node.dataset.field === field.replace(/\[\d+\]$/, "")
    );
    if (!control) {
      showError(testFormError, error);
      return;
    }
    const n = /\[(\d+)\]$/.exec(field);
    const where = n && lines[Number(n[1])] !== undefined ? `Line ${lines[Number(n[1])] + 1}: ` : "";
    const id = `err-ht-${control.dataset.field}`;
    control.after(el("p", { class: "field-error", id, role: "alert" }, where + describe(error)));
    control.setAttribute("aria-invalid", "true");
    control.setAttribute("aria-describedby", id);
    control.focus();
  }

  testForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors();
    const typed = $("ht-variants").value.split("\n");
    const lines = [];  // the textarea line of each variant sent
    const variants = [];
    typed.forEach((line, i) => {
      if (line.trim()) {
        lines.push(i);
        variants.push(line.trim());
      }
    });
    const raw = $("ht-generated").value.trim();
    const generated = raw === "" ? 0 : Number(raw);
    const button = $("ht-start");
    button.disabled = true;
    $("ht-status").textContent = generated > 0 ? `Starting; the model writes ${generated}…` : "Starting…";
    try {
      const test = await api(`/v1/articles/${encodeURIComponent(testsArticle)}/headline-tests`, {
        method: "POST",
        body: { variants, generated },
      });
      $("ht-status").textContent = "";
      $("ht-variants").value = "";
      $("ht-generated").value = "0";
      await loadTests();  // hides the form: the article has a live test now
      const listed = $("ht-list-status");
      listed.textContent = `Started ${test.test_id} with ${test.variants.length} headlines. ${listed.textContent}`;
    } catch (error) {
      $("ht-status").textContent = "";
      showTestFormError(error, lines);
    } finally {
      button.disabled = false;
    }
  });
  testsPanel.addEventListener("toggle", () => {
    if (testsPanel.open) loadTests();
  });
  $("ht-reload").addEventListener("click", loadTests);

  async function open(id) {
    id = id.trim();
    if (!id) return;
    const run = ++opened;
    clearError(errorRegion);
    try {
      renderArticle(await api(`/v1/articles/${encodeURIComponent(id)}`));
      history.replaceState(null, "", `?id=${encodeURIComponent(id)}`);
      showTestsPanel(id);
    } catch (error) {
      for (const part of ["article", "article-text", "variants", "summaries", "headline-tests"]) $(part).hidden = true;
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
