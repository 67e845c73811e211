/* Studio home: what the service holds right now (healthz is open, no key needed). */
"use strict";

(async () => {
  const status = document.getElementById("home-status");
  try {
    const health = await Studio.api("/healthz");
    status.textContent =
      `${health.articles.toLocaleString()} articles indexed (${health.index_kind}), ` +
      `${health.events.toLocaleString()} events, ranking head: ${health.ranker || "none"}.`;
  } catch (error) {
    status.textContent = error.message;
  }
})();
