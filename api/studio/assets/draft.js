/* Draft studio: brief + audience -> a draft streamed token by token, then the guarded result
 * with headline options, grounding flags and the sources it stood on. */
"use strict";

(() => {
  const { api, el, readEvents, showError, clearError, groundingFlag, articleLink, copy } = Studio;
  const $ = (id) => document.getElementById(id);
  const form = $("draft-form");
  const status = $("draft-status");
  const errorRegion = $("draft-error");

  async function loadSegments() {
    const select = $("audience-segment");
    try {
      const { segments } = await api("/v1/segments");
      select.replaceChildren(el("option", { value: "" }, "None"));
      for (const segment of segments) {
        if (segment.id === "generic") continue;
        const topics = segment.interests.join(", ") || "no topics yet";
        select.append(el("option", { value: segment.id }, `${segment.id}: ${topics}`));
      }
    } catch (error) {
      showError(errorRegion, error);
    }
  }

  /** The model's rejected text with the words the guard could not find marked. */
  function markUnsupported(text, words) {
    const node = $("draft-rejected-text");
    node.replaceChildren();
    if (!words.length) {
      node.textContent = text;
      return;
    }
    const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    const pattern = new RegExp(`(${escaped.join("|")})`, "g");
    for (const part of text.split(pattern)) {
      node.append(words.includes(part) ? el("mark", { title: "not in the sources" }, part) : part);
    }
  }

  async function showSources(ids) {
    const list = $("draft-sources");
    list.replaceChildren();
    if (!ids.length) list.append(el("li", { class: "muted" }, "None: the draft stands on the brief."));
    for (const id of ids) {
      const item = el("li", {}, articleLink(id, id));
      list.append(item);
      try {
        const article = await api(`/v1/articles/${encodeURIComponent(id)}`);
        item.replaceChildren(articleLink(id, article.title));
      } catch (error) {
        /* the id link stays */
      }
    }
  }

  /** One draft sentence: its text, where it came from, its citations, and a rewrite button. */
  function sentenceItem(sentence, index, context) {
    const item = el("li", { class: `sentence ${sentence.origin}` });
    const text = el("span", { class: "sentence-text" }, sentence.text);
    const badge = sentence.origin === "model"
      ? el("span", { class: "flag ok", title: "the model's words, checked against the sources" }, sentence.verbatim ? "model (near copy)" : "model")
      : el("span", { class: "flag extract", title: "a source sentence: the model's was rejected" }, "extract");
    const rewrite = el("button", { type: "button", class: "small", "aria-label": `Rewrite sentence ${index + 1}` }, "Rewrite");
    rewrite.addEventListener("click", () => rewriteSentence(index, context, rewrite));
    item.append(text, " ", badge, " ", rewrite);
    const details = el("details", { class: "citation" });
    const count = sentence.citations.length;
    details.append(el("summary", {}, count ? `Source${count > 1 ? "s" : ""} (${count})` : "No source found"));
    for (const citation of sentence.citations) {
      details.append(
        el("blockquote", {}, citation.sentence),
        el("p", { class: "muted" }, "from ", articleLink(citation.article_id, citation.article_id), ` · characters ${citation.start}–${citation.end}`)
      );
    }
    if (sentence.rejected) {
      details.append(el("p", { class: "muted" }, `The model wrote “${sentence.rejected}”, rejected: ${sentence.unsupported.join(", ") || "unsupported"}.`));
    }
    item.append(details);
    return item;
  }

  function renderSentences(context) {
    const list = $("draft-sentences");
    list.replaceChildren(...context.sentences.map((s, i) => sentenceItem(s, i, context)));
    $("draft-text").textContent = context.sentences.map((s) => s.text).join(" ");
  }

  async function rewriteSentence(index, context, button) {
    clearError(errorRegion);
    button.disabled = true;
    status.textContent = `Rewriting sentence ${index + 1}…`;
    try {
      const sentence = await api("/v1/drafts/sentence", {
        method: "POST",
        body: {
          brief: context.brief,
          audience: context.audience || undefined,
          sources: context.source_ids,
          sentences: context.sentences.map((s) => s.text),
          index,
        },
      });
      context.sentences[index] = sentence;
      renderSentences(context);
      status.textContent = `Sentence ${index + 1} rewritten (${sentence.origin}).`;
    } catch (error) {
      showError(errorRegion, error);
      status.textContent = "";
      button.disabled = false;
    }
  }

  function showResult(result, streamed, brief) {
    const draft = result.draft;
    $("draft-text").textContent = draft.text;
    renderSentences({
      brief,
      audience: result.audience,
      source_ids: result.source_ids,
      sentences: result.sentences.slice(),
    });
    $("draft-flag").replaceChildren(groundingFlag(draft));
    $("draft-audience").textContent = `Written for: ${result.audience || "a general audience"} · ${result.template} · ${result.model}`;
    const rejected = $("draft-rejected");
    rejected.hidden = !draft.fallback_reason;
    if (draft.fallback_reason) {
      $("draft-rejected-reason").textContent = `${draft.fallback_reason}. The draft above is an extract from the sources instead.`;
      markUnsupported(streamed, draft.unsupported || []);
    }
    const options = $("headline-options");
    options.replaceChildren();
    for (const headline of result.headlines) {
      const text = el("span", { class: "option-text" }, headline.text);
      const button = el("button", { type: "button", class: "small" }, "Copy");
      button.addEventListener("click", () => copy(headline.text, button, text));
      options.append(el("li", {}, text, " ", groundingFlag(headline), " ", button));
    }
    showSources(result.source_ids);
    const model = result.sentences.filter((s) => s.origin === "model").length;
    status.textContent = draft.fallback_reason
      ? "Done: the checks rejected the model's text; these are extracts from the sources."
      : `Done: ${model} of ${result.sentences.length} sentences in the model's words, each cited.`;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError(errorRegion);
    const body = {
      brief: $("brief").value,
      related_k: Number($("related-k").value || 0),
    };
    if ($("audience-text").value.trim()) body.audience = $("audience-text").value.trim();
    if ($("audience-segment").value) body.segment = $("audience-segment").value;
    if ($("audience-user").value.trim()) body.user_id = $("audience-user").value.trim();
    const chosen = $("draft-source-ids").value.split(",").map((id) => id.trim()).filter(Boolean);
    if (chosen.length) body.sources = chosen;
    const button = $("draft-submit");
    button.disabled = true;
    status.textContent = "Writing…";
    $("draft-result").hidden = false;
    $("draft-text").textContent = "";
    $("draft-flag").replaceChildren(el("span", { class: "flag" }, "writing"));
    $("draft-rejected").hidden = true;
    $("headline-options").replaceChildren();
    $("draft-sources").replaceChildren();
    $("draft-sentences").replaceChildren();
    let streamed = "";
    let tokens = 0;
    try {
      const response = await api("/v1/drafts", {
        method: "POST",
        body,
        accept: "text/event-stream",
      });
      let finished = false;
      await readEvents(response, (name, data) => {
        if (name === "token") {
          streamed += data.text;
          tokens += 1;
          $("draft-text").textContent = streamed;
          status.textContent = `Writing… ${tokens} tokens`;
        } else if (name === "sentence") {
          const checked = data.rejected ? "rejected: will be written again or replaced" : "checked";
          $("draft-sentences").append(el("li", { class: "sentence pending" }, data.text, " ", el("span", { class: "flag" }, checked)));
        } else if (name === "restart") {
          streamed = "";
          tokens = 0;
          $("draft-sentences").replaceChildren();
          status.textContent = "A generation worker was lost: starting again…";
        } else if (name === "done") {
          finished = true;
          showResult(data, streamed, body.brief);
        } else if (name === "error") {
          throw new Studio.ApiError(500, data.error.code, data.error.message, data.error.field);
        }
      });
      if (!finished) {
        throw new Error("the connection closed before the draft was finished; try again");
      }
    } catch (error) {
      $("draft-result").hidden = !streamed;
      status.textContent = "";
      showError(errorRegion, error);
    } finally {
      button.disabled = false;
    }
  });

  $("draft-copy").addEventListener("click", (event) =>
    copy($("draft-text").textContent, event.currentTarget, $("draft-text"))
  );
  document.addEventListener("studio:key", loadSegments);
  loadSegments();
})();
