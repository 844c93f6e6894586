// The dashboard: publications, the top entities of one of them, and the pipeline, read
// from the frontend's public JSON routes on the same origin. Vanilla JS, no build step,
// nothing fetched from elsewhere: it must work on a machine with no network.
"use strict";

(() => {
  const STATUS_EVERY_MS = 2000;
  const PUBLICATIONS_EVERY_MS = 5000;
  // Always shown in the processes table, so that a stage with no live process stands out
  // (control only reports the stages it has heard from).
  const CORE_STAGES = ["frontend", "ledger", "extractor", "saver"];

  const $ = (id) => document.getElementById(id);
  const chart = $("chart");
  // The page size lives in the markup so that a test reads the same number the page uses.
  const PAGE_SIZE = Number(chart.dataset.limit) || 15;

  const view = {
    publication: null, // the selected publication's name
    label: "", // "" = every label
    cursor: null, // the cursor of the page on screen (null: the first page)
    previous: [], // the cursors of the pages before it, for Previous
    next: null, // next_cursor of the page on screen
    scale: 0, // the first page's top count: later pages keep its scale, so bars compare
    articles: new Map(), // articles per publication, from the last refresh
    request: 0, // numbers entity requests, so that a late answer cannot overwrite a newer one
  };

  // --- fetching -----------------------------------------------------------------------

  class HttpError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function getJSON(path, params = {}) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") query.set(name, String(value));
    }
    const url = query.toString() ? `${path}?${query}` : path;
    let response;
    try {
      response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
    } catch (err) {
      throw new HttpError(`cannot reach the frontend (${err.message})`, 0);
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      // Not JSON (a proxy's error page, say): the status alone is reported below.
    }
    if (!response.ok) {
      const why = body && body.title
        ? `${body.title}${body.description ? `: ${body.description}` : ""}`
        : `HTTP ${response.status} ${response.statusText}`;
      throw new HttpError(why, response.status);
    }
    if (body === null) throw new HttpError(`${path}: the answer is not JSON`, response.status);
    return body;
  }

  function showError(element, message) {
    element.textContent = message;
    element.hidden = !message;
  }

  // Runs `task` now and again `every` ms after each run ends (never two at once); skips the
  // request while the tab is hidden, and catches up as soon as it is shown again.
  function repeat(task, every) {
    let timer = null;
    const run = async () => {
      clearTimeout(timer);
      if (!document.hidden) await task();
      timer = setTimeout(run, every);
    };
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) run();
    });
    run();
  }

  // --- formatting ---------------------------------------------------------------------

  const number = (n) => Number(n).toLocaleString("en");

  function age(seconds) {
    if (!(seconds > 0)) return "0 s";
    if (seconds < 10) return `${seconds.toFixed(1)} s`;
    if (seconds < 120) return `${Math.round(seconds)} s`;
    if (seconds < 7200) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    // textContent, never innerHTML: names and entity texts come from posted articles.
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // --- publications -------------------------------------------------------------------

  const publicationList = $("publications");

  async function refreshPublications() {
    let body;
    try {
      body = await getJSON("publications", { limit: 100 });
    } catch (err) {
      showError($("publications-error"), `Publications: ${err.message}`);
      return;
    }
    showError($("publications-error"), "");
    const publications = body.publications;
    $("publications-empty").hidden = publications.length > 0;
    renderPublications(publications);

    const before = view.articles;
    view.articles = new Map(publications.map((p) => [p.name, p.articles]));
    if (view.publication === null && publications.length) {
      select(publications[0].name);
    } else if (
      view.publication !== null &&
      before.get(view.publication) !== view.articles.get(view.publication)
    ) {
      // New articles of the publication on screen: its counts moved, so reload this page.
      loadEntities({ quiet: true });
    }
  }

  function renderPublications(publications) {
    const names = publications.map((p) => p.name);
    const shown = [...publicationList.children].map((li) => li.dataset.name);
    if (names.join("\u0000") !== shown.join("\u0000")) {
      // The list changed: rebuild it, keeping the keyboard focus where it was.
      const focused = document.activeElement?.closest?.("#publications li")?.dataset.name;
      publicationList.replaceChildren(
        ...publications.map((p) => {
          const li = element("li");
          li.dataset.name = p.name;
          const button = element("button");
          button.type = "button";
          button.append(element("span", "name", p.name), element("span", "count", ""));
          li.append(button);
          return li;
        }),
      );
      if (focused !== undefined) {
        const again = [...publicationList.children].find((li) => li.dataset.name === focused);
        again?.querySelector("button").focus();
      }
    }
    // Counts change in place, so a refresh does not disturb the list while it is read.
    publications.forEach((p, i) => {
      const li = publicationList.children[i];
      li.dataset.articles = String(p.articles);
      li.querySelector(".count").textContent = number(p.articles);
      li.querySelector("button").title = `${p.name}: ${number(p.articles)} articles`;
    });
    markSelected();
  }

  function markSelected() {
    for (const li of publicationList.children) {
      const selected = li.dataset.name === view.publication;
      li.classList.toggle("selected", selected);
      li.querySelector("button").setAttribute("aria-pressed", String(selected));
    }
  }

  function select(name) {
    view.publication = name;
    markSelected();
    firstPage();
  }

  publicationList.addEventListener("click", (event) => {
    const li = event.target.closest("li[data-name]");
    if (li && li.dataset.name !== view.publication) select(li.dataset.name);
  });

  // --- entities -----------------------------------------------------------------------

  function firstPage() {
    view.cursor = null;
    view.previous = [];
    view.scale = 0;
    loadEntities();
  }

  $("label").addEventListener("change", (event) => {
    view.label = event.target.value;
    if (view.publication !== null) firstPage();
  });

  $("next").addEventListener("click", () => {
    if (view.next === null) return;
    view.previous.push(view.cursor);
    view.cursor = view.next;
    loadEntities();
  });

  $("prev").addEventListener("click", () => {
    if (!view.previous.length) return;
    view.cursor = view.previous.pop();
    loadEntities();
  });

  async function loadEntities({ quiet = false } = {}) {
    const request = ++view.request;
    const { publication, label, cursor } = view;
    if (!quiet) {
      // The test (and a screen reader) can tell "loading" from "shows this choice".
      chart.dataset.state = "loading";
      chart.setAttribute("aria-busy", "true");
    }
    $("chart-title").textContent = `Top entities: ${publication}`;
    $("prev").disabled = true;
    $("next").disabled = true;
    let body;
    try {
      body = await getJSON("entities", { publication, limit: PAGE_SIZE, cursor, label });
    } catch (err) {
      if (request !== view.request) return;
      // A failed background refresh keeps the bars on screen; a new choice shows none, as
      // old bars would be taken for the answer to it.
      if (!quiet) chart.replaceChildren();
      chart.dataset.state = "error";
      chart.removeAttribute("aria-busy");
      showError($("entities-error"), `Entities of ${publication}: ${err.message}`);
      $("prev").disabled = !view.previous.length;
      return;
    }
    if (request !== view.request) return; // the user chose something else meanwhile
    showError($("entities-error"), "");
    view.next = body.next_cursor;
    renderChart(body.entities, { publication, label });
  }

  function renderChart(entities, { publication, label }) {
    const top = entities.length ? entities[0].count : 0;
    if (!view.previous.length || !view.scale) view.scale = top;
    const scale = Math.max(view.scale, top, 1);

    chart.replaceChildren(
      ...entities.map((e) => {
        const li = element("li", "bar-row");
        li.dataset.entity = e.key;
        li.dataset.label = e.label;
        li.dataset.count = String(e.count);
        const name = element("span", "entity-name");
        name.append(
          element("span", "entity-text", e.text),
          element("span", "entity-label", e.label),
        );
        const track = element("span", "bar-track");
        const bar = element("span", "bar");
        bar.dataset.label = e.label;
        // At least a sliver, so the smallest count is still visibly a bar.
        bar.style.width = `${Math.max(1, (100 * e.count) / scale).toFixed(2)}%`;
        track.append(bar);
        // Hidden from assistive technology: the text and count already say it all.
        track.setAttribute("aria-hidden", "true");
        li.append(name, track, element("span", "entity-count", number(e.count)));
        return li;
      }),
    );
    $("chart-empty").hidden = entities.length > 0;
    $("page").textContent = `page ${view.previous.length + 1}`;
    $("prev").disabled = !view.previous.length;
    $("next").disabled = view.next === null;
    chart.dataset.publication = publication;
    chart.dataset.label = label;
    chart.dataset.page = String(view.previous.length + 1);
    chart.dataset.state = entities.length ? "ready" : "empty";
    chart.removeAttribute("aria-busy");
  }

  // --- pipeline -----------------------------------------------------------------------

  async function refreshStatus() {
    let status;
    try {
      status = await getJSON("status");
    } catch (err) {
      const state = $("state");
      state.textContent = "unavailable";
      state.dataset.state = "unknown";
      $("pipeline-panel").classList.add("stale");
      showError($("status-error"), `Pipeline: ${err.message}`);
      return;
    }
    showError($("status-error"), "");
    $("pipeline-panel").classList.remove("stale");
    renderStatus(status);
  }

  function renderStatus(s) {
    const state = $("state");
    state.textContent = s.state;
    state.dataset.state = s.state;
    $("backlog").textContent = number(s.backlog);
    $("oldest-age").textContent = s.backlog ? age(s.oldest_age_seconds) : "none waiting";
    $("rate").textContent = Number(s.acknowledged_per_second).toFixed(1);
    const dead = $("dead-letters");
    dead.textContent = number(s.dead_letters);
    dead.classList.toggle("warn", s.dead_letters > 0);

    const extra = Object.keys(s.processes)
      .filter((stage) => !CORE_STAGES.includes(stage))
      .sort();
    $("processes").tBodies[0].replaceChildren(
      ...[...CORE_STAGES, ...extra].map((stage) => {
        const live = s.processes[stage] ?? 0;
        const row = element("tr");
        row.dataset.stage = stage;
        row.append(element("th", "", stage), element("td", "", number(live)));
        row.querySelector("th").scope = "row";
        row.classList.toggle("warn", live === 0 && CORE_STAGES.includes(stage));
        return row;
      }),
    );
    $("updated").textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
  }

  repeat(refreshStatus, STATUS_EVERY_MS);
  repeat(refreshPublications, PUBLICATIONS_EVERY_MS);
})();
