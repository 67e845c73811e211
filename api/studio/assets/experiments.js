/* Experiments: A/B tests of the feed and the model registry. A list to choose from, a form that
 * starts one (arm rows to add and remove), and for the chosen experiment each arm's clicks per
 * feed and CTR with 95% intervals, as a table and as charts with error bars, each treatment
 * against the control, and a Stop button that can promote the winner's ranker version. */
"use strict";

(() => {
  const { api, el, showError, clearError, describe, table, param, ApiError } = Studio;
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const MAX_ARMS = 6;
  const MIN_ARMS = 2;
  const errorRegion = $("experiments-error");
  const form = $("experiment-form");
  const formError = $("experiment-form-error");
  const formStatus = $("experiment-form-status");
  const count = (v) => (typeof v === "number" ? v.toLocaleString() : "–");
  const perFeed = (v) => (typeof v === "number" ? v.toFixed(3) : "–");
  const percent = (v) => (typeof v === "number" ? `${(100 * v).toFixed(2)}%` : "–");
  const signed = (v, format) => (typeof v === "number" ? `${v > 0 ? "+" : v < 0 ? "−" : ""}${format(Math.abs(v))}` : "–");
  const interval = (ci, format) => (ci ? `${format(ci[0])} to ${format(ci[1])}` : "–");
  const pValue = (p) => (typeof p !== "number" ? "–" : p < 0.001 ? "< 0.001" : p.toFixed(3));

  let experiments = [];
  let models = { serving: "", versions: [], prompt_versions: [] };
  let selected = null;  // the chosen experiment, as listed
  let armSerial = 0;  // ids for arm rows, never reused

  // --- the list ---------------------------------------------------------------------------
  function renderList() {
    const rows = $("experiment-rows");
    rows.replaceChildren();
    for (const experiment of experiments) {
      const choose = el(
        "button",
        { type: "button", class: "small", "aria-label": `Show the report of ${experiment.name}` },
        "Show"
      );
      choose.addEventListener("click", () => select(experiment.experiment_id));
      const running = experiment.status === "running";
      rows.append(el(
        "tr",
        {
          dataset: { id: experiment.experiment_id },
          "aria-current": selected && selected.experiment_id === experiment.experiment_id ? "true" : null,
        },
        el("th", { scope: "row" }, el("span", { class: "item-head" }, experiment.name),
           el("br"), el("span", { class: "muted" }, experiment.experiment_id)),
        el("td", {}, el("span", { class: `flag ${running ? "ok" : "warn"}` }, experiment.status)),
        el("td", {}, experiment.arms.map((a) => (a.name === experiment.control ? `${a.name} (control)` : a.name)).join(", ")),
        el("td", {}, running ? "–" : experiment.winner || "none"),
        el("td", {}, choose)
      ));
    }
    $("experiments-status").textContent = experiments.length
      ? `${experiments.length} experiment${experiments.length > 1 ? "s" : ""}`
      : "No experiments yet: start one below.";
  }

  async function loadList() {
    clearError(errorRegion);
    try {
      ({ experiments } = await api("/v1/experiments"));
      experiments.sort((a, b) => b.created_at.localeCompare(a.created_at));
      renderList();
    } catch (error) {
      $("experiments-status").textContent = "";
      showError(errorRegion, error);
    }
  }

  // --- the models -------------------------------------------------------------------------
  async function loadModels() {
    try {
      models = await api("/v1/models");
    } catch (error) {
      models = { serving: "", versions: [], prompt_versions: [] };
      $("models-serving").textContent = describe(error);
      $("models-table").replaceChildren();
      return;
    }
    for (const select of form.querySelectorAll("select[data-role='ranker']")) fillVersions(select);
    for (const select of form.querySelectorAll("select[data-role='prompt']")) fillPromptVersions(select);
    $("models-serving").textContent = `Serving now: ${models.serving}. ` +
      (models.versions.length ? "Registered versions, newest first:" : "No registered versions yet: the newsroom retrain command adds them.");
    if (!models.versions.length) {
      $("models-table").replaceChildren();
      return;
    }
    const ci = (m) => (m && m.top_slot_ctr_ci95 ? ` (${interval(m.top_slot_ctr_ci95, (v) => v.toFixed(3))})` : "");
    const metric = (v) => (typeof v === "number" ? v.toFixed(4) : "–");
    $("models-table").replaceChildren(table(
      "Ranking heads in the registry (metrics of each as the challenger on the recent slice)",
      ["Version", "Status", "Created", "AUC", "nDCG@10", "Top-slot CTR, SNIPS (95% CI)", "Serving"],
      models.versions.map((v) => {
        const m = (v.report && v.report.metrics && v.report.metrics.challenger) || null;
        return [
          v.version,
          el("span", { class: `flag ${v.status === "champion" ? "ok" : ""}` }, v.status),
          new Date(v.created_at).toLocaleString(),
          metric(m && m.auc),
          metric(m && m["ndcg@10"]),
          `${metric(m && m.top_slot_ctr_snips)}${ci(m)}`,
          v.version === models.serving ? el("strong", {}, "serving") : "",
        ];
      })
    ));
  }

  function fillVersions(select) {
    const value = select.value;
    select.replaceChildren(
      el("option", { value: "" }, "the champion (default)"),
      el("option", { value: "committed" }, "committed (the head in the model directory)"),
      ...models.versions.map((v) => el("option", { value: v.version }, `${v.version} (${v.status})`))
    );
    if ([...select.options].some((o) => o.value === value)) select.value = value;
  }

  function fillPromptVersions(select) {
    const value = select.value;
    select.replaceChildren(
      el("option", { value: "" }, "the served templates (default)"),
      ...(models.prompt_versions || []).map((v) => el("option", { value: v }, v))
    );
    if ([...select.options].some((o) => o.value === value)) select.value = value;
  }

  // --- the form: arm rows -----------------------------------------------------------------
  const ARM_FIELDS = [
    // [key, label, attributes]
    ["weight", "Weight (share of readers)", { type: "number", step: "any", placeholder: "1" }],
    ["mmr_lambda", "MMR λ (1 = no diversity)", { type: "number", step: "any", placeholder: "serving value" }],
    ["freshness_half_life_hours", "Freshness half-life, hours", { type: "number", step: "any", placeholder: "serving value" }],
    ["category_cap", "Category cap (share of a feed)", { type: "number", step: "any", placeholder: "serving value" }],
  ];

  function addArm(name = "") {
    const uid = ++armSerial;
    const id = (key) => `e-arm-${uid}-${key}`;
    const field = (key, label, attributes) => el(
      "div", {},
      el("label", { for: id(key) }, label),
      el("input", { id: id(key), dataset: { key }, autocomplete: "off", ...attributes })
    );
    const ranker = el("select", { id: id("ranker_version"), dataset: { key: "ranker_version", role: "ranker" } });
    fillVersions(ranker);
    const prompt = el("select", { id: id("prompt_version"), dataset: { key: "prompt_version", role: "prompt" } });
    fillPromptVersions(prompt);
    const remove = el("button", { type: "button", class: "small danger" }, "Remove");
    const row = el(
      "fieldset", { class: "arm", dataset: { uid } },
      el("legend", {}, "Arm"),
      el("div", { class: "row" },
        field("name", "Name", { maxlength: "64", value: name, placeholder: "letters, digits, . _ -" }),
        field(...ARM_FIELDS[0]),
        el("div", {}, el("label", { for: ranker.id }, "Ranker version"), ranker),
        el("div", {}, el("label", { for: prompt.id }, "Prompt version (summaries, headlines)"), prompt),
        ...ARM_FIELDS.slice(1).map((f) => field(...f))),
      el("div", { class: "toolbar" }, remove)
    );
    remove.addEventListener("click", () => {
      row.remove();
      numberArms();
      $("e-arm-add").focus();
    });
    $("e-arm-rows").append(row);
    numberArms();
    return row;
  }

  /** Legends and data-field names follow the rows' order: the API names `arms[1].mmr_lambda`. */
  function numberArms() {
    const rows = [...$("e-arm-rows").children];
    rows.forEach((row, i) => {
      row.querySelector("legend").textContent = i === 0 ? "Arm 1: the control" : `Arm ${i + 1}`;
      row.dataset.field = `arms[${i}]`;
      for (const control of row.querySelectorAll("[data-key]")) control.dataset.field = `arms[${i}].${control.dataset.key}`;
      row.querySelector("button.danger").disabled = rows.length <= MIN_ARMS;
      row.querySelector("button.danger").setAttribute("aria-label", `Remove arm ${i + 1}`);
    });
    $("e-arm-add").disabled = rows.length >= MAX_ARMS;
  }

  function readForm() {
    const arms = [...$("e-arm-rows").children].map((row) => {
      const arm = {};
      for (const control of row.querySelectorAll("[data-key]")) {
        const value = control.value.trim();
        if (value === "") continue;  // unset: the API's default (the serving value)
        arm[control.dataset.key] = ["name", "ranker_version", "prompt_version"].includes(control.dataset.key) ? value : Number(value);
      }
      if (arm.name === undefined) arm.name = "";
      return arm;
    });
    return {
      name: $("e-name").value.trim(), arms, sequential: $("e-sequential").checked, mode: $("e-mode").value,
    };
  }

  function resetForm() {
    $("e-name").value = "";
    $("e-sequential").checked = true;
    $("e-mode").value = "ab";
    $("e-arm-rows").replaceChildren();
    addArm("control");
    addArm("treatment");
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

  /** The control the API's `field` names: "arms[1].mmr_lambda" exactly, else "arms", "name". */
  function controlFor(field) {
    if (!field) return null;
    const controls = [...form.querySelectorAll("[data-field]")];
    return controls.find((node) => node.dataset.field === field)
      || controls.find((node) => node.dataset.field === field.replace(/\[\d+\]/g, "").split(".")[0])
      || null;
  }

  function showFormError(error) {
    const control = error instanceof ApiError && error.status === 422 ? controlFor(error.field) : null;
    if (!control) {
      showError(formError, error);
      return;
    }
    const id = `err-${control.dataset.field.replace(/[^A-Za-z0-9]+/g, "-")}`;
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
    const button = $("experiment-save");
    button.disabled = true;
    formStatus.textContent = "Starting…";
    try {
      const made = await api("/v1/experiments", { method: "POST", body: readForm() });
      formStatus.textContent = `Started ${made.experiment_id}.`;
      resetForm();
      await loadList();
      await select(made.experiment_id);
    } catch (error) {
      formStatus.textContent = "";
      showFormError(error);
    } finally {
      button.disabled = false;
    }
  });

  // --- the chosen experiment's report -----------------------------------------------------
  async function select(id) {
    clearError(errorRegion);
    $("exp-detail-status").textContent = "Loading…";
    let report;
    try {
      report = await api(`/v1/experiments/${encodeURIComponent(id)}`);
      history.replaceState(null, "", `?id=${encodeURIComponent(id)}`);
    } catch (error) {
      $("exp-detail-status").textContent = "";
      showError(errorRegion, error);
      return;
    }
    selected = experiments.find((e) => e.experiment_id === id) || null;
    renderReport(report);
    $("exp-detail-status").textContent = "";
    for (const row of $("experiment-rows").children) {
      if (row.dataset.id === id) row.setAttribute("aria-current", "true");
      else row.removeAttribute("aria-current");
    }
  }

  function settingsText(settings) {
    const parts = [];
    if (settings.weight !== undefined) parts.push(`weight ${settings.weight}`);
    parts.push(`head: ${settings.ranker_version || "the champion"}`);
    if (settings.prompt_version !== undefined) parts.push(`prompts: ${settings.prompt_version}`);
    if (settings.mmr_lambda !== undefined) parts.push(`MMR λ ${settings.mmr_lambda}`);
    if (settings.freshness_half_life_hours !== undefined) parts.push(`half-life ${settings.freshness_half_life_hours} h`);
    if (settings.category_cap !== undefined) parts.push(`category cap ${settings.category_cap}`);
    return parts.join(" · ");
  }

  function renderReport(report) {
    // The list's status, not the report's: a stopped experiment's report is the one taken at
    // the stop, and says "running".
    const status = selected ? selected.status : report.status;
    const running = status === "running";
    $("experiment-detail").hidden = false;
    $("exp-heading").textContent = report.name;
    const stopped = selected && selected.stopped_at ? ` · stopped ${new Date(selected.stopped_at).toLocaleString()}` : "";
    const promoted = selected && selected.promoted_version ? ` · promoted ${selected.promoted_version}` : "";
    $("exp-summary").textContent =
      `${report.experiment_id} · ${status} · started ${new Date(report.started_at).toLocaleString()}${stopped} · ` +
      `control: ${report.control} · winner: ${report.winner || (running ? "none yet" : "none")}${promoted}`;
    $("exp-method").textContent = {
      sequential: "Method: sequential (always-valid confidence sequences): valid to check daily, however often the report is read.",
      fixed: "Method: fixed horizon: valid only when read once, at the sample size planned in advance. Looking every day makes false winners likelier.",
      interleaving: "Method: team-draft interleaving: both arms fill every reader's feed; a reader prefers the arm whose items they clicked more, and a sign test over readers decides (fixed horizon: read it once, at the planned number of readers).",
    }[report.method] || "";
    $("exp-stop-bar").hidden = !running;

    $("exp-arms").replaceChildren(table(
      "Per arm, with 95% intervals",
      ["Arm", "Settings", "Readers", "Feeds", "Items shown", "Clicks", "Clicks per feed (95% CI)", "CTR (95% CI)"],
      report.arms.map((a) => [
        a.name === report.control ? `${a.name} (control)` : a.name,
        settingsText(a.settings),
        count(a.readers),
        count(a.feeds),
        count(a.exposures),
        count(a.clicks),
        `${perFeed(a.clicks_per_feed)} (${interval(a.clicks_per_feed_ci, perFeed)})`,
        `${percent(a.ctr)} (${interval(a.ctr_ci, percent)})`,
      ])
    ));
    $("exp-charts").replaceChildren(
      figure("Clicks per feed per arm, with 95% intervals",
        ciChart("Clicks per feed per arm with 95% intervals", report, "clicks_per_feed", perFeed, "cpf-chart")),
      figure("CTR per arm, with 95% intervals",
        ciChart("Click-through rate per arm with 95% intervals", report, "ctr", percent, "ctr-chart"))
    );
    renderComparisons(report);
  }

  function cupedText(c) {
    if (c.cuped) {
      return typeof c.cuped_variance_reduction === "number"
        ? `on: variance ${(100 * c.cuped_variance_reduction).toFixed(1)}% lower`
        : "on";
    }
    return c.note ? `off: ${c.note}` : "off";
  }

  function renderPreference(report) {
    const rows = report.arms.filter((a) => a.comparison).map((arm) => {
      const c = arm.comparison;
      return [
        arm.name,
        count(c.wins),
        count(c.losses),
        count(c.ties),
        typeof c.difference === "number" ? signed(c.difference, (v) => `${(100 * v).toFixed(1)} points`) : "–",
        pValue(c.p_value),
        el("span", { class: `flag ${c.significant ? "ok" : ""}` }, c.significant ? "yes" : "no"),
      ];
    });
    $("exp-comparisons").replaceChildren(table(
      `Readers preferring each arm over the control (${report.control})`,
      ["Arm", "Readers preferring it", "Preferring the control", "Ties", "Share above ½", "p-value", "Significant"], rows));
  }

  function renderComparisons(report) {
    if (report.method === "interleaving") return renderPreference(report);
    const treatments = report.arms.filter((a) => a.comparison);
    const rows = [];
    for (const arm of treatments) {
      for (const [label, c, format] of [
        ["clicks per feed", arm.comparison, perFeed],
        ["CTR", arm.ctr_comparison, percent],
      ]) {
        if (!c) continue;
        const significant = el("span", { class: `flag ${c.significant ? "ok" : ""}` }, c.significant ? "yes" : "no");
        rows.push([
          arm.name,
          label + (label === "clicks per feed" ? " (primary)" : ""),
          c.error ? c.error : `${signed(c.difference, format)} (${interval(c.ci, (v) => signed(v, format))})`,
          typeof c.relative_difference === "number" ? signed(c.relative_difference, (v) => `${(100 * v).toFixed(1)}%`) : "–",
          pValue(c.p_value),
          significant,
          cupedText(c),
        ]);
      }
    }
    $("exp-comparisons").replaceChildren(rows.length
      ? table(`Each treatment minus the control (${report.control}), 95% intervals`,
        ["Arm", "Metric", "Difference (95% CI)", "Relative", "p-value", "Significant", "CUPED"], rows)
      : el("p", { class: "muted" }, "No treatment arm to compare."));
  }

  function figure(caption, svg) {
    return el("figure", { class: "delivery" }, svg, el("figcaption", {}, caption));
  }

  function svgNode(tag, attributes = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** One horizontal bar per arm (the estimate) with its 95% interval as an error bar. */
  function ciChart(label, report, metric, format, kind) {
    const arms = report.arms;
    const box = { width: 420, left: 100, right: 16, top: 8, row: 34, axis: 24 };
    const height = box.top + arms.length * box.row + box.axis;
    const svg = svgNode("svg", {
      viewBox: `0 0 ${box.width} ${height}`, class: `chart delivery-chart ${kind}`, role: "img", "aria-label": label,
    });
    const values = arms.flatMap((a) => [a[metric], ...(a[`${metric}_ci`] || [])]).filter((v) => typeof v === "number");
    const lo = Math.min(0, ...values);
    const hi = Math.max(1e-9, ...values) * 1.05;
    const plot = box.width - box.left - box.right;
    const x = (v) => box.left + (plot * (v - lo)) / (hi - lo);
    const bottom = box.top + arms.length * box.row;
    for (const [v, anchor] of [[lo, "start"], [(lo + hi) / 2, "middle"], [hi, "end"]]) {
      svg.append(
        svgNode("line", { x1: x(v), x2: x(v), y1: box.top, y2: bottom, class: "grid-line" }),
        svgNode("text", { x: x(v), y: bottom + 16, "text-anchor": anchor, class: "tick" }, format(v))
      );
    }
    arms.forEach((arm, i) => {
      const y = box.top + i * box.row;
      const middle = y + box.row / 2;
      const value = arm[metric];
      const ci = arm[`${metric}_ci`];
      svg.append(svgNode("text", { x: box.left - 8, y: middle + 4, "text-anchor": "end" },
        arm.name.length > 13 ? `${arm.name.slice(0, 12)}…` : arm.name));
      const start = x(Math.max(lo, 0));
      const width = typeof value === "number" ? Math.max(0, x(value) - start) : 0;
      const bar = svgNode("rect", {
        x: start, y: y + 7, width, height: box.row - 14,
        class: `bar ${arm.name === report.control ? "" : "highlight"}`.trim(),
      });
      bar.append(svgNode("title", {}, `${arm.name}: ${typeof value === "number" ? format(value) : "no data yet"}` +
        (ci ? ` (95% CI ${interval(ci, format)})` : "")));
      svg.append(bar);
      if (ci) {
        const [a, b] = [x(ci[0]), x(ci[1])];
        svg.append(
          svgNode("line", { x1: a, x2: b, y1: middle, y2: middle, class: "ci" }),
          svgNode("line", { x1: a, x2: a, y1: middle - 6, y2: middle + 6, class: "ci" }),
          svgNode("line", { x1: b, x2: b, y1: middle - 6, y2: middle + 6, class: "ci" })
        );
      }
    });
    return svg;
  }

  async function stop() {
    if (!selected) return;
    const { experiment_id: id, name } = selected;
    const promote = $("exp-promote").checked;
    const what = promote
      ? " A significant winner's ranker version becomes the champion on every server."
      : " Nothing is promoted.";
    if (!window.confirm(`Stop “${name}” (${id})? Its readers go back to the serving feed.${what}`)) return;
    clearError(errorRegion);
    $("exp-stop").disabled = true;
    try {
      const { experiment } = await api(`/v1/experiments/${encodeURIComponent(id)}/stop`, {
        method: "POST", body: { promote },
      });
      await Promise.all([loadList(), loadModels()]);
      await select(id);
      $("exp-detail-status").textContent = `Stopped. Winner: ${experiment.winner || "none"}` +
        (experiment.promoted_version ? `; ${experiment.promoted_version} is now the champion.`
          : promote ? "; nothing was promoted (no significant winner with a registered version)." : ".");
    } catch (error) {
      showError(errorRegion, error);
    } finally {
      $("exp-stop").disabled = false;
    }
  }

  $("e-arm-add").addEventListener("click", () => addArm().querySelector("input").focus());
  $("exp-stop").addEventListener("click", stop);
  $("experiments-reload").addEventListener("click", async () => {
    await loadList();
    if (selected) await select(selected.experiment_id);
  });

  async function start() {
    await loadModels();
    await loadList();
    if (param("id")) await select(param("id"));
  }

  resetForm();
  document.addEventListener("studio:key", start);
  start();
})();
