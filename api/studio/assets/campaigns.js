/* Campaigns: sponsored items. A list to choose from, a form that creates or changes one (a
 * change sends only the fields that changed), and for the chosen campaign its delivery by day
 * as a chart, its pacing today, its audience breakdown (noisy, k readers a cell at least) and
 * whether the studio's example readers would see it now. */
"use strict";

(() => {
  const { api, el, showError, clearError, describe, table, param, ApiError } = Studio;
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const CHART_DAYS = 31;  // at most this many days in the delivery chart, the latest ones
  const errorRegion = $("campaigns-error");
  const form = $("campaign-form");
  const formError = $("campaign-form-error");
  const formStatus = $("campaign-form-status");
  const money = (v) => (typeof v === "number" ? v.toFixed(2) : "–");
  const count = (v) => (typeof v === "number" ? v.toLocaleString() : "–");

  let campaigns = [];
  let selected = null;  // the chosen campaign, as the API last returned it
  let editing = null;  // the campaign the form is changing; null: the form creates one
  let segmentsListed = false;  // whether the segment picker could be filled from /v1/segments

  // --- the list ---------------------------------------------------------------------------
  function budgetText(campaign) {
    return campaign.total_budget === null ? "no limit" : money(campaign.total_budget);
  }

  function renderList() {
    const rows = $("campaign-rows");
    rows.replaceChildren();
    for (const campaign of campaigns) {
      const choose = el(
        "button",
        { type: "button", class: "small", "aria-label": `Show ${campaign.creative.title}` },
        "Show"
      );
      choose.addEventListener("click", () => select(campaign.id));
      const row = el(
        "tr",
        { dataset: { id: campaign.id }, "aria-current": selected && selected.id === campaign.id ? "true" : null },
        el("th", { scope: "row" }, el("span", { class: "item-head" }, campaign.creative.title),
           el("br"), el("span", { class: "muted" }, `${campaign.advertiser} · ${campaign.id}`)),
        el("td", {}, el("span", { class: `flag ${campaign.status === "active" ? "ok" : "warn"}` }, campaign.status)),
        el("td", {}, money(campaign.bid_cpc)),
        el("td", {}, money(campaign.daily_budget)),
        el("td", {}, budgetText(campaign)),
        el("td", {}, choose)
      );
      rows.append(row);
    }
    $("campaigns-status").textContent = campaigns.length
      ? `${campaigns.length} campaign${campaigns.length > 1 ? "s" : ""}`
      : "No campaigns yet: create one below.";
  }

  async function loadList() {
    clearError(errorRegion);
    try {
      ({ campaigns } = await api("/v1/campaigns"));
      campaigns.sort((a, b) => b.created_at.localeCompare(a.created_at));
      renderList();
    } catch (error) {
      $("campaigns-status").textContent = "";
      showError(errorRegion, error);
    }
  }

  // --- the form ---------------------------------------------------------------------------
  async function loadSegments() {
    const choices = $("c-segment-choices");
    try {
      const { segments } = await api("/v1/segments");
      choices.replaceChildren();
      for (const segment of segments) {
        if (segment.id !== "generic") addSegmentChoice(segment.id, segment.interests);
      }
      segmentsListed = choices.children.length > 0;
      $("c-segments-hint").textContent = "";
    } catch (error) {
      segmentsListed = false;
      // An ads key may not list segments: the ids can still be typed.
      $("c-segments-hint").textContent = error instanceof ApiError && error.status === 403
        ? "This key may not list the segments: type their ids (an admin or writer knows them)."
        : "";
    }
    $("c-segment-picker").hidden = !segmentsListed;
    $("c-segments-typed").hidden = segmentsListed;
  }

  function addSegmentChoice(id, interests = []) {
    const box = el("input", { type: "checkbox", id: `c-seg-${id}`, value: id });
    const topics = interests.length ? `: ${interests.join(", ")}` : "";
    $("c-segment-choices").append(el("label", { class: "choice", for: box.id }, box, ` ${id}${topics}`));
    return box;
  }

  const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
  const numberOr = (input, empty) => (input.value.trim() === "" ? empty : Number(input.value));
  const textOr = (input, empty) => input.value.trim() || empty;
  // datetime-local is wall time without a zone; the form says UTC, and the API reads naive as UTC.
  const momentOf = (input) => (input.value ? `${input.value}:00Z` : null);
  const localOf = (iso) => (iso ? new Date(iso).toISOString().slice(0, 16) : "");

  function chosenSegments() {
    if (!segmentsListed) return list($("c-segments").value);
    return [...$("c-segment-choices").querySelectorAll("input:checked")].map((b) => b.value);
  }

  /** What the form says, as a full campaign spec (null: not set). */
  function readForm() {
    return {
      advertiser: $("c-advertiser").value.trim(),
      creative: {
        title: $("c-title").value.trim(),
        body: $("c-body").value.trim(),
        url: $("c-url").value.trim(),
        category: textOr($("c-category"), null),
      },
      bid_cpc: numberOr($("c-bid"), null),
      daily_budget: numberOr($("c-daily"), null),
      total_budget: numberOr($("c-total"), null),
      start: momentOf($("c-start")),
      end: momentOf($("c-end")),
      status: $("c-status").value,
      targeting: {
        categories: list($("c-categories").value),
        segments: chosenSegments(),
        audience: textOr($("c-audience"), null),
        audience_threshold: numberOr($("c-threshold"), null),
      },
      frequency_cap: numberOr($("c-cap"), null),
    };
  }

  /** A new campaign: the fields set (unset optional ones are left to the API's defaults). */
  function creation(spec) {
    const body = {};
    for (const [name, value] of Object.entries(spec)) {
      if (value !== null) body[name] = value;
    }
    body.creative = Object.fromEntries(Object.entries(spec.creative).filter(([, v]) => v !== null));
    body.targeting = Object.fromEntries(Object.entries(spec.targeting).filter(([, v]) => v !== null));
    return body;
  }

  /** A change: only the fields that differ from the campaign as loaded (creative field by
   * field, since the API merges it; targeting whole). */
  function changes(spec, campaign) {
    const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
    const body = {};
    for (const name of ["advertiser", "bid_cpc", "daily_budget", "total_budget", "status", "frequency_cap"]) {
      if (!same(spec[name], campaign[name])) body[name] = spec[name];
    }
    for (const name of ["start", "end"]) {
      if (!same(spec[name] && new Date(spec[name]).getTime(), campaign[name] && new Date(campaign[name]).getTime())) {
        body[name] = spec[name];
      }
    }
    const creative = {};
    for (const [name, value] of Object.entries(spec.creative)) {
      if (!same(value, campaign.creative[name])) creative[name] = value;
    }
    if (Object.keys(creative).length) body.creative = creative;
    const targeting = { ...campaign.targeting };
    const wanted = { ...spec.targeting, categories: spec.targeting.categories.map((c) => c.toLowerCase()) };
    if (Object.keys(wanted).some((name) => !same(wanted[name], targeting[name]))) body.targeting = spec.targeting;
    return body;
  }

  function fillForm(campaign) {
    const c = campaign || {
      advertiser: "", creative: {}, bid_cpc: null, daily_budget: null, total_budget: null,
      start: null, end: null, status: "active", targeting: {}, frequency_cap: null,
    };
    const put = (id, value) => ($(id).value = value === null || value === undefined ? "" : String(value));
    put("c-advertiser", c.advertiser);
    put("c-title", c.creative.title);
    put("c-body", c.creative.body);
    put("c-url", c.creative.url);
    put("c-category", c.creative.category);
    put("c-bid", c.bid_cpc);
    put("c-daily", c.daily_budget);
    put("c-total", c.total_budget);
    put("c-cap", c.frequency_cap);
    put("c-start", localOf(c.start));
    put("c-end", localOf(c.end));
    put("c-status", c.status);
    put("c-categories", (c.targeting.categories || []).join(", "));
    put("c-audience", c.targeting.audience);
    put("c-threshold", c.targeting.audience_threshold);
    const segments = c.targeting.segments || [];
    put("c-segments", segments.join(", "));
    for (const box of $("c-segment-choices").querySelectorAll("input")) box.checked = segments.includes(box.value);
    if (segmentsListed) {
      for (const id of segments) {
        if (!$(`c-seg-${id}`)) addSegmentChoice(id).checked = true;  // a segment no longer listed
      }
    }
    editing = campaign;
    $("campaign-form-heading").textContent = campaign ? `Edit ${campaign.creative.title}` : "New campaign";
    $("campaign-save").textContent = campaign ? "Save changes" : "Create campaign";
    $("campaign-cancel").hidden = !campaign;
    clearFieldErrors();
  }

  // --- errors by the field they name ------------------------------------------------------
  function clearFieldErrors() {
    clearError(formError);
    for (const node of form.querySelectorAll(".field-error")) node.remove();
    for (const node of form.querySelectorAll("[aria-invalid]")) {
      node.removeAttribute("aria-invalid");
      const described = (node.getAttribute("aria-describedby") || "").split(" ").filter((id) => !id.startsWith("err-"));
      if (described.length) node.setAttribute("aria-describedby", described.join(" "));
      else node.removeAttribute("aria-describedby");
    }
  }

  /** The visible control the API's `field` names ("creative.title", "targeting.categories[2]"). */
  function controlFor(field) {
    if (!field) return null;
    const name = field.replace(/\[\d+\]/g, "");
    return [...form.querySelectorAll("[data-field]")].find(
      (node) => node.dataset.field === name && !node.closest("[hidden]")
    ) || null;
  }

  function showFormError(error) {
    const control = error instanceof ApiError ? controlFor(error.field) : null;
    if (!control) {
      showError(formError, error);
      return;
    }
    const id = `err-${control.dataset.field.replaceAll(".", "-")}`;
    const message = el("p", { class: "field-error", id, role: "alert" }, describe(error));
    control.after(message);
    control.setAttribute("aria-invalid", "true");
    const described = control.getAttribute("aria-describedby");
    control.setAttribute("aria-describedby", described ? `${described} ${id}` : id);
    (control.matches("fieldset") ? control.querySelector("input") || control : control).focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors();
    clearError(errorRegion);
    const spec = readForm();
    const button = $("campaign-save");
    button.disabled = true;
    formStatus.textContent = "Saving…";
    try {
      let saved;
      if (editing) {
        const body = changes(spec, editing);
        if (!Object.keys(body).length) {
          formStatus.textContent = "Nothing changed.";
          return;
        }
        saved = await api(`/v1/campaigns/${encodeURIComponent(editing.id)}`, { method: "PATCH", body });
        formStatus.textContent = `Saved: ${Object.keys(body).join(", ")} changed.`;
      } else {
        saved = await api("/v1/campaigns", { method: "POST", body: creation(spec) });
        formStatus.textContent = `Created ${saved.id}.`;
      }
      fillForm(saved);
      await loadList();
      await select(saved.id);
    } catch (error) {
      formStatus.textContent = "";
      showFormError(error);
    } finally {
      button.disabled = false;
    }
  });

  // --- the chosen campaign ------------------------------------------------------------------
  function showSelected(campaign) {
    selected = campaign;
    $("campaign-detail").hidden = false;
    $("detail-heading").textContent = campaign.creative.title;
    const window_ = [campaign.start && `from ${new Date(campaign.start).toUTCString()}`,
                     campaign.end && `until ${new Date(campaign.end).toUTCString()}`].filter(Boolean).join(" ");
    $("detail-summary").textContent =
      `${campaign.advertiser} · ${campaign.id} · ${campaign.status} · bid ${money(campaign.bid_cpc)} a click · ` +
      `daily budget ${money(campaign.daily_budget)} · total ${budgetText(campaign)}` +
      (campaign.frequency_cap ? ` · at most ${campaign.frequency_cap} a reader a day` : "") +
      (window_ ? ` · ${window_}` : "");
    $("campaign-toggle").textContent = campaign.status === "active" ? "Pause" : "Resume";
    for (const row of $("campaign-rows").children) {
      if (row.dataset.id === campaign.id) row.setAttribute("aria-current", "true");
      else row.removeAttribute("aria-current");
    }
  }

  async function select(id) {
    clearError(errorRegion);
    $("detail-status").textContent = "Loading…";
    try {
      showSelected(await api(`/v1/campaigns/${encodeURIComponent(id)}`));
      history.replaceState(null, "", `?id=${encodeURIComponent(id)}`);
    } catch (error) {
      $("detail-status").textContent = "";
      showError(errorRegion, error);
      return;
    }
    await Promise.all([loadReport(id), loadPreview(id)]);
    $("detail-status").textContent = "";
  }

  async function loadReport(id) {
    try {
      renderReport(await api(`/v1/campaigns/${encodeURIComponent(id)}/report`));
    } catch (error) {
      $("report-totals").replaceChildren();
      $("delivery-charts").replaceChildren();
      $("audience-tables").replaceChildren();
      showError(errorRegion, error);
    }
  }

  const PACING = {
    on_pace: "on pace",
    ahead: "ahead of pace: throttled until the day catches up",
    behind: "behind pace",
    budget_spent: "budget spent",
    not_live: "not live (paused, or outside its dates)",
  };

  function renderReport(report) {
    const stat = (term, value) => [el("dt", {}, term), el("dd", {}, value)];
    $("report-totals").replaceChildren(
      ...stat("Impressions", count(report.impressions)),
      ...stat("Clicks", `${count(report.clicks)} (${count(report.billed_clicks)} billed)`),
      ...stat("CTR", `${(100 * report.ctr).toFixed(2)}%`),
      ...stat("Spend", money(report.spend)),
      ...stat("Average CPC", money(report.avg_cpc)),
      ...stat("eCPM", money(report.ecpm)),
      ...stat("Conversions", count(report.conversions))
    );
    const p = report.pacing;
    const state = $("pacing-state");
    state.dataset.state = p.state;
    state.replaceChildren(
      el("strong", {}, `Pacing today: ${PACING[p.state] || p.state}.`),
      ` Spent ${money(p.spend_today)} of ${money(p.daily_budget)} on ${p.day}; ` +
        `an even pace would have spent ${money(p.expected_by_now)} by now ` +
        `(${(100 * p.day_elapsed).toFixed(0)}% of the UTC day gone). ` +
        (p.total_budget === null
          ? `Spent in all: ${money(p.spend_total)}.`
          : `Spent in all: ${money(p.spend_total)} of ${money(p.total_budget)}.`)
    );
    const days = chartDays(report.days, p.day);
    $("delivery-charts").replaceChildren(
      figure("Impressions and clicks per day", deliveryChart(days), [
        ["swatch impressions", "impressions"], ["swatch clicks", "clicks"],
      ]),
      figure("Spend per day against the daily budget", spendChart(days, p), [
        ["swatch spend", "spend"], ["swatch budget", "daily budget"], ["swatch expected", "even pace by now, today"],
      ])
    );
    renderAudience(report.audience);
  }

  /** The report's days (only days with delivery) as a run of consecutive days ending today. */
  function chartDays(days, today) {
    const byDay = new Map(days.map((d) => [d.day, d]));
    const last = [today, ...days.map((d) => d.day)].sort().at(-1);
    const first = [today, ...days.map((d) => d.day)].sort()[0];
    const run = [];
    for (let t = Date.parse(`${last}T00:00:00Z`); run.length < CHART_DAYS; t -= 86_400_000) {
      const day = new Date(t).toISOString().slice(0, 10);
      run.unshift(byDay.get(day) || { day, impressions: 0, clicks: 0, spend: 0 });
      if (day <= first) break;
    }
    return run;
  }

  function figure(caption, svg, legend) {
    return el(
      "figure",
      { class: "delivery" },
      svg,
      el("figcaption", {}, caption, el("span", { class: "legend" },
        legend.map(([swatch, label]) => el("span", {}, el("span", { class: swatch, "aria-hidden": "true" }), label))))
    );
  }

  function svgNode(tag, attributes = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const BOX = { width: 420, height: 200, left: 44, right: 8, top: 10, bottom: 28 };

  /** An SVG frame with a y axis up to `top` and day labels; returns [svg, x(i), y(v), band]. */
  function frame(label, days, top, format) {
    const svg = svgNode("svg", {
      viewBox: `0 0 ${BOX.width} ${BOX.height}`, class: "chart delivery-chart", role: "img", "aria-label": label,
    });
    const plotWidth = BOX.width - BOX.left - BOX.right;
    const plotHeight = BOX.height - BOX.top - BOX.bottom;
    const band = plotWidth / days.length;
    const x = (i) => BOX.left + i * band;
    const y = (v) => BOX.top + plotHeight * (1 - v / top);
    for (const v of [0, top / 2, top]) {
      svg.append(
        svgNode("line", { x1: BOX.left, x2: BOX.width - BOX.right, y1: y(v), y2: y(v), class: "grid-line" }),
        svgNode("text", { x: BOX.left - 4, y: y(v) + 4, "text-anchor": "end", class: "tick" }, format(v))
      );
    }
    const every = Math.ceil(days.length / 6);  // at most six day labels
    days.forEach((d, i) => {
      if (i % every && i !== days.length - 1) return;
      svg.append(svgNode("text", { x: x(i) + band / 2, y: BOX.height - 8, "text-anchor": "middle", class: "tick" }, d.day.slice(5)));
    });
    return [svg, x, y, band];
  }

  function deliveryChart(days) {
    // An even top, so the middle tick is a whole number too.
    const most = Math.max(...days.map((d) => d.impressions), ...days.map((d) => d.clicks));
    const top = Math.max(2, 2 * Math.ceil(most / 2));
    const [svg, x, y, band] = frame(
      `Impressions and clicks per day, ${days[0].day} to ${days.at(-1).day}`, days, top, (v) => Math.round(v).toString()
    );
    const bar = Math.max(1, band * 0.38);
    days.forEach((d, i) => {
      for (const [kind, value, offset] of [["impressions", d.impressions, 0.1], ["clicks", d.clicks, 0.52]]) {
        if (!value) continue;
        const rect = svgNode("rect", {
          x: x(i) + band * offset, y: y(value), width: bar, height: y(0) - y(value), class: `bar ${kind}`,
        });
        rect.append(svgNode("title", {}, `${d.day}: ${value} ${kind}`));
        svg.append(rect);
      }
    });
    return svg;
  }

  function spendChart(days, pacing) {
    const top = Math.max(pacing.daily_budget, ...days.map((d) => d.spend), pacing.spend_today) * 1.1;
    const [svg, x, y, band] = frame(
      `Spend per day against the daily budget of ${money(pacing.daily_budget)}; today ${money(pacing.spend_today)} spent, ` +
        `${money(pacing.expected_by_now)} expected by now`,
      days, top, money
    );
    days.forEach((d, i) => {
      const spend = d.day === pacing.day ? Math.max(d.spend, pacing.spend_today) : d.spend;
      if (spend > 0) {
        const rect = svgNode("rect", {
          x: x(i) + band * 0.15, y: y(spend), width: Math.max(1, band * 0.7), height: y(0) - y(spend), class: "bar spend",
        });
        rect.append(svgNode("title", {}, `${d.day}: ${money(spend)} spent`));
        svg.append(rect);
      }
      if (d.day === pacing.day) {
        // Today's even pace: where the spend would be now if it kept to the daily budget evenly.
        const mark = svgNode("line", {
          x1: x(i), x2: x(i) + band, y1: y(pacing.expected_by_now), y2: y(pacing.expected_by_now), class: "expected",
        });
        mark.append(svgNode("title", {}, `even pace by now: ${money(pacing.expected_by_now)}`));
        svg.append(mark);
      }
    });
    const budget = svgNode("line", {
      x1: BOX.left, x2: BOX.width - BOX.right, y1: y(pacing.daily_budget), y2: y(pacing.daily_budget), class: "budget",
    });
    budget.append(svgNode("title", {}, `daily budget: ${money(pacing.daily_budget)}`));
    svg.append(budget);
    return svg;
  }

  function renderAudience(audience) {
    $("audience-privacy").textContent =
      `Counts carry differential-privacy noise (ε = ${audience.epsilon} for the report; ${audience.mechanism}), ` +
      `and a cell is shown only with at least k = ${audience.min_readers} readers` +
      (audience.cells_hidden ? `: ${audience.cells_hidden} smaller cell${audience.cells_hidden > 1 ? "s" : ""} hidden.` : ".");
    const rows = (cells) => cells.map((c) => [c.cell || "none", count(c.readers), count(c.clickers)]);
    const holder = $("audience-tables");
    holder.replaceChildren();
    for (const [caption, cells] of [["By interest segment", audience.by_segment], ["By top category", audience.by_category]]) {
      holder.append(cells.length
        ? table(caption, ["Cell", "Readers reached", "Readers who clicked"], rows(cells))
        : el("p", { class: "muted" }, `${caption}: no cell with at least ${audience.min_readers} readers yet.`));
    }
  }

  async function loadPreview(id) {
    const note = $("preview-note");
    const holder = $("preview-rows");
    note.hidden = true;
    holder.replaceChildren(el("p", { class: "muted" }, "Loading…"));
    try {
      const { readers } = await api(`/v1/campaigns/${encodeURIComponent(id)}/preview`);
      holder.replaceChildren(readers.length
        ? table("Example readers", ["Reader", "Interests", "Segment", "Eligible", "Why", "pCTR", "eCPM"],
          readers.map((r) => [
            r.reader,
            r.interests.join(", ") || "none yet",
            r.segment || "–",
            el("span", { class: `flag ${r.eligible ? "ok" : "warn"}` }, r.eligible ? "yes" : "no"),
            r.why,
            r.pctr.toFixed(4),
            money(r.ecpm),
          ]))
        : el("p", { class: "muted" }, "No example readers: the demo writes them (newsroom demo)."));
    } catch (error) {
      holder.replaceChildren();
      note.hidden = false;
      note.textContent = error instanceof ApiError && error.status === 403
        ? "Previews name example readers, so they need an admin key: this key may manage campaigns but not preview them."
        : describe(error);
    }
  }

  async function toggle() {
    if (!selected) return;
    const status = selected.status === "active" ? "paused" : "active";
    clearError(errorRegion);
    $("campaign-toggle").disabled = true;
    try {
      const saved = await api(`/v1/campaigns/${encodeURIComponent(selected.id)}`, { method: "PATCH", body: { status } });
      if (editing && editing.id === saved.id) fillForm(saved);
      await loadList();
      await select(saved.id);
      $("detail-status").textContent = status === "paused" ? "Paused." : "Resumed.";
    } catch (error) {
      showError(errorRegion, error);
    } finally {
      $("campaign-toggle").disabled = false;
    }
  }

  async function remove() {
    if (!selected) return;
    const { id, creative } = selected;
    if (!window.confirm(`Delete “${creative.title}” (${id})? It stops at once; its delivery records are kept for billing.`)) return;
    clearError(errorRegion);
    try {
      await api(`/v1/campaigns/${encodeURIComponent(id)}`, { method: "DELETE" });
      selected = null;
      $("campaign-detail").hidden = true;
      if (editing && editing.id === id) fillForm(null);
      history.replaceState(null, "", window.location.pathname);
      await loadList();
      $("campaigns-status").textContent += ` · deleted ${id}.`;
    } catch (error) {
      showError(errorRegion, error);
    }
  }

  $("campaign-new").addEventListener("click", () => {
    fillForm(null);
    formStatus.textContent = "";
    $("c-advertiser").focus();
  });
  $("campaign-cancel").addEventListener("click", () => {
    fillForm(null);
    formStatus.textContent = "";
  });
  $("campaign-edit").addEventListener("click", () => {
    if (!selected) return;
    fillForm(selected);
    formStatus.textContent = "";
    $("c-advertiser").focus();
  });
  $("campaign-toggle").addEventListener("click", toggle);
  $("campaign-delete").addEventListener("click", remove);
  $("campaigns-reload").addEventListener("click", () => {
    loadList();
    if (selected) select(selected.id);
  });

  async function start() {
    await loadSegments();
    await loadList();
    if (param("id")) await select(param("id"));
  }

  document.addEventListener("studio:key", start);
  start();
})();
