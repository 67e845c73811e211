/* Quality dashboard: evaluation reports as tables and charts, served versions, live counters. */
"use strict";

(() => {
  const { api, el, showError, clearError, table, barChart } = Studio;
  const $ = (id) => document.getElementById(id);
  const number = (v, digits = 3) => (typeof v === "number" ? v.toFixed(digits) : "–");

  function stat(term, value) {
    return [el("dt", {}, term), el("dd", {}, value)];
  }

  function renderLive(q) {
    const g = q.generation;
    $("live").replaceChildren(
      ...stat("Articles", q.articles.toLocaleString()),
      ...stat("Index size", `${q.index_size.toLocaleString()} (${q.index_kind})`),
      ...stat("Events", q.events.toLocaleString()),
      ...stat("Generation cache hit rate", g ? `${(100 * g.cache_hit_rate).toFixed(1)}%` : "generation off"),
      ...stat("Cached generated outputs", g ? g.generated_cached.toLocaleString() : "–"),
      ...stat("Interest segments", g ? String(g.segments) : "–"),
      ...stat("Generation queue", g ? String(g.queue_depth) : "–")
    );
  }

  function renderVersions(q) {
    $("versions").replaceChildren(
      table("Served models", ["Role", "Model / version"],
        Object.entries(q.models).map(([role, version]) => [role, version || "none"])),
      table("Prompt templates", ["Template"], q.templates.map((t) => [t]))
    );
  }

  function rankingReport(report) {
    const systems = Object.entries(report.systems);
    const metrics = ["auc", "mrr", "ndcg@5", "ndcg@10"];
    return [
      table(`${report.n_impressions} impressions`, ["System", "AUC", "MRR", "nDCG@5", "nDCG@10"],
        systems.map(([name, m]) => [name, ...metrics.map((k) => number(m[k], 4))])),
      barChart(
        systems.map(([name, m]) => ({ label: name, value: m.auc, highlight: name === "ranker" })),
        { max: 1, title: "AUC per system", format: (v) => v.toFixed(3) }
      ),
    ];
  }

  function generationReport(report) {
    const systems = Object.entries(report.systems);
    const metrics = ["rouge1", "rouge2", "rougeL", "unsupported_rate"];
    return [
      table(`${report.task}: ${report.n} held-out examples`,
        ["System", "ROUGE-1", "ROUGE-2", "ROUGE-L", "unsupported"],
        systems.map(([name, m]) => [name, ...metrics.map((k) => number(m[k], k === "unsupported_rate" ? 3 : 2))])),
      barChart(
        systems.map(([name, m]) => ({ label: name, value: m.rouge1, highlight: name === "served" })),
        { title: "ROUGE-1 per system", format: (v) => v.toFixed(2) }
      ),
    ];
  }

  function personalizationReport(report) {
    const rows = [
      ["pairs (article × reader)", String(report.pairs)],
      ["similarity to reader: generic", number(report.similarity_generic)],
      ["similarity to reader: personalized", number(report.similarity_personalized)],
      ["uplift (± standard error)", `${number(report.uplift)} ± ${number(report.uplift_se)}`],
      ["share of pairs improved", number(report.share_improved)],
      ["unsupported rate: generic / personalized",
       `${number(report.unsupported_rate_generic)} / ${number(report.unsupported_rate_personalized)}`],
    ];
    return [table("Personalized vs generic summaries", ["Measure", "Value"], rows)];
  }

  const RENDER = { ranking: rankingReport, generation: generationReport, personalization: personalizationReport };

  function renderReports(reports) {
    const holder = $("reports");
    holder.replaceChildren();
    if (!reports.length) holder.append(el("p", {}, "No evaluation reports yet."));
    for (const entry of reports) {
      holder.append(
        el(
          "section",
          { class: "report", dataset: { kind: entry.kind } },
          el("h3", {}, `${entry.kind}: ${entry.name}`),
          el("p", { class: "muted" }, `written ${new Date(entry.modified).toLocaleString()}`),
          el("div", { class: "grid" }, RENDER[entry.kind](entry.report))
        )
      );
    }
  }

  async function load() {
    clearError($("quality-error"));
    try {
      const q = await api("/v1/quality");
      renderLive(q);
      renderVersions(q);
      renderReports(q.reports);
    } catch (error) {
      showError($("quality-error"), error);
    }
  }

  document.addEventListener("studio:key", load);
  load();
})();
