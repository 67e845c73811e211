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

  function showResult(result, streamed) {
    const draft = result.draft;
    $("draft-text").textContent = draft.text;
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
    status.textContent = draft.fallback_reason
      ? "Done: the guard replaced the model's text with an extract."
      : "Done: every number and name is in the sources.";
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
    const button = $("draft-submit");
    button.disabled = true;
    status.textContent = "Writing…";
    $("draft-result").hidden = false;
    $("draft-text").textContent = "";
    $("draft-flag").replaceChildren(el("span", { class: "flag" }, "writing"));
    $("draft-rejected").hidden = true;
    $("headline-options").replaceChildren();
    $("draft-sources").replaceChildren();
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
        } else if (name === "done") {
          finished = true;
          showResult(data, streamed);
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
