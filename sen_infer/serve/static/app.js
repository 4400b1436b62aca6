// SEN person search, part 5 of 5: the page itself. Start-up, the access key, the filters and the URL,
// searching (by description or by a stored crop) and the result cards. Plain JS, no build step; nothing is
// fetched but this server's API. format.js, api.js, cameras.js and details.js are loaded before it.
"use strict";

(function () {
  const F = window.SenPage.format;
  const { API, api, apiKey, setApiKey, whenUnauthorized, ImageLoader } = window.SenPage.api;
  const { CameraPicker, FrameView, rowLabel, SCORE_HINT } = window.SenPage;

  const $ = (id) => document.getElementById(id);
  const el = {
    info: $("info"), auth: $("auth"), authNote: $("auth-note"), authForm: $("auth-form"), authHelp: $("auth-help"),
    apiKey: $("api-key"), forgetKey: $("forget-key"),
    form: $("search"), q: $("q"), k: $("k"), since: $("since"), until: $("until"), minQuality: $("min-quality"),
    sinceLabel: $("since-label"), untilLabel: $("until-label"), sinceUtc: $("since-utc"), untilUtc: $("until-utc"),
    timeHint: $("time-hint"),
    reference: $("reference"), referenceImg: $("reference-img"), referenceLabel: $("reference-label"),
    referenceClear: $("reference-clear"),
    status: $("status"), error: $("error"), scoreLegend: $("score-legend"), results: $("results"),
  };
  const TEXT_PLACEHOLDER = el.q.placeholder;

  const cameras = new CameraPicker({
    list: $("camera-list"), filter: $("camera-filter"), toggle: $("camera-more"),
    clear: $("camera-clear"), summary: $("camera-summary"),
  });
  const frameView = new FrameView((hit) => {
    findSimilar(hit);
    el.results.focus({ preventScroll: true });
  });

  const state = {
    info: null,
    ready: false,          // info and cameras loaded
    keyRejected: false,    // the server refused the key this tab sent
    searchSeq: 0,          // the latest search; older answers are dropped
    searchAbort: null,
    gridImages: null,      // ImageLoader for the result cards
    reference: null,       // the row key a "find similar" search is searching by
    referenceImages: null, // ImageLoader for its thumbnail
    lastText: "",          // the last description searched, restored by the reference's ×
  };

  // ---------------------------------------------------------------- messages and the key panel

  function setStatus(text) { el.status.textContent = text || ""; }

  function showError(message) {
    // the server's line may quote what was sent: direction controls in it are spelled out, not obeyed
    el.error.textContent = message ? F.escapeControls(F.oneLine(message)) : "";
    el.error.hidden = !message;
  }

  // A 401: the key this tab holds (if any) is no good. It is dropped, so it is neither offered to
  // be forgotten nor sent again, and the form asks for another.
  function needKey() {
    if (apiKey()) {
      state.keyRejected = true;
      setApiKey("");
    }
    setAuth("need", state.keyRejected ? "That access key was not accepted; enter a valid one."
      : "This server needs an access key.");
    if (!frameView.isOpen && document.activeElement !== el.apiKey) el.apiKey.focus();
  }
  whenUnauthorized(needKey);

  // mode: "off" (no panel), "need" (ask for a key), "ok" (a key is in use)
  function setAuth(mode, text) {
    el.auth.hidden = mode === "off";
    el.auth.dataset.mode = mode;
    el.auth.dataset.rejected = String(mode === "need" && state.keyRejected);
    el.authForm.hidden = mode !== "need";
    el.authHelp.hidden = mode !== "need";
    el.forgetKey.hidden = !(mode === "ok" && apiKey());
    if (text) el.authNote.textContent = text;
  }

  // ---------------------------------------------------------------- start-up

  async function boot() {
    showError("");
    try {
      state.info = await api("/info");
    } catch (e) {
      el.info.textContent = e.status === 401 ? "Access key required" : "Server not available";
      cameras.showMessage(e.status === 401 ? "listed once a key is accepted" : "unavailable");
      if (e.status !== 401) showError(e.message);
      else setStatus("Enter an access key to search.");
      return;
    }
    const info = state.info;
    if (info.auth) setAuth("ok", "An access key is in use for this tab.");
    else setAuth("off");
    let list = [];
    try {
      list = (await api("/cameras")).cameras || [];
      cameras.render(list);
    } catch (e) {
      cameras.showMessage("cameras unavailable");
      showError(e.message);
    }
    const span = timeSpan(info, list);
    F.setWallClock(span !== null && span[0] >= F.UNIX_MIN);
    renderInfo(info, span);
    setTimeMode(span);
    state.ready = true;
    fromUrl(true);
  }

  // The gallery's first and last time: from /info, else from the cameras' own spans; null without times.
  function timeSpan(info, cameraList) {
    const span = info.time_span;
    if (span && span.length === 2 && span[0] !== null && span[1] !== null) return [Number(span[0]), Number(span[1])];
    const firsts = cameraList.map((c) => c.first).filter((t) => !F.missing(t));
    const lasts = cameraList.map((c) => c.last).filter((t) => !F.missing(t));
    return firsts.length ? [Math.min(...firsts), Math.max(...lasts)] : null;
  }

  function renderInfo(info, span) {
    const parts = [];
    if (info.model) parts.push("Model " + info.model);
    if (info.backend) parts.push(info.backend);
    parts.push(F.fmtInt(info.rows || 0) + " rows");
    if (!F.missing(info.tracks)) parts.push(F.fmtInt(info.tracks) + " tracks");
    const count = (info.cameras || []).length;
    parts.push(count + (count === 1 ? " camera" : " cameras"));
    if (span && F.wallClock()) parts.push(F.fmtTime(span[0]) + " \u2013 " + F.fmtTime(span[1]));
    else if (span) parts.push(span[0].toFixed(1) + "\u2013" + span[1].toFixed(1) + " s into the videos");
    if (info.damaged_rows) parts.push(F.fmtInt(info.damaged_rows) + " damaged rows (not served)");
    if (info.version) parts.push("v" + info.version);
    el.info.textContent = parts.join(" \u00b7 ");
  }

  // Wall-clock galleries get date-and-time inputs in the browser's time zone, the UTC equivalent beside
  // them; galleries timed from each video's start get seconds. The API takes Unix seconds either way.
  function setTimeMode(span) {
    const wall = F.wallClock();
    for (const [input, label, name] of [[el.since, el.sinceLabel, "Since"], [el.until, el.untilLabel, "Until"]]) {
      if (wall) {
        // no min/max: a gallery that is still ingesting grows past the span it had when the page loaded
        input.type = "datetime-local";
        input.step = "1";
        input.removeAttribute("min");
        input.removeAttribute("placeholder");
        label.textContent = name + " (your local time)";
      } else {
        input.type = "number";
        input.step = "any";
        input.min = "0";
        label.textContent = name + " (seconds into the video)";
        const edge = span ? (name === "Since" ? Math.floor(span[0]) : Math.ceil(span[1])) : null;
        input.placeholder = edge === null ? "" : "e.g. " + edge;
      }
    }
    const zone = F.zoneLabel(new Date());
    el.timeHint.textContent = wall ? "Times are in this browser's time zone (" + zone + ")."
      : "This gallery's times count from the start of each video.";
    echoUtc();
  }

  // the UTC equivalent of each date input, so an operator can match times given in UTC
  function echoUtc() {
    for (const [input, out] of [[el.since, el.sinceUtc], [el.until, el.untilUtc]]) {
      const t = F.wallClock() ? F.fromInputValue(input.value) : null;
      out.textContent = t === null ? "" : "= " + F.fmtUtc(t);
      out.hidden = t === null;
    }
  }

  // ---------------------------------------------------------------- the URL <-> the form

  function readForm() {
    const k = parseInt(el.k.value, 10);
    return {
      q: el.q.value.trim(),
      k: isFinite(k) ? k : 20,
      cameras: cameras.checked(),
      since: readTime(el.since),
      until: readTime(el.until),
      minQuality: el.minQuality.value === "" ? null : Number(el.minQuality.value),
    };
  }

  // A time from the URL keeps its exact value while its input still shows it (the datetime input
  // holds whole seconds); once the operator edits the input, the input's value counts.
  function readTime(input) {
    const exact = input.dataset.exact;
    if (exact !== undefined && exact !== "" && F.toInputValue(Number(exact)) === input.value) return Number(exact);
    return F.fromInputValue(input.value);
  }

  function writeTime(input, t) {
    input.value = F.toInputValue(t);
    if (t === null) delete input.dataset.exact; else input.dataset.exact = String(t);
  }

  function isSimilar(search) { return search.similar !== undefined && search.similar !== null; }

  function paramsFor(search) {
    const p = new URLSearchParams();
    if (isSimilar(search)) p.set("similar", String(search.similar));
    else if (search.q) p.set("q", search.q);
    p.set("k", String(search.k));
    for (const c of search.cameras) p.append("camera", c);
    if (search.since !== null) p.set("since", String(search.since));
    if (search.until !== null) p.set("until", String(search.until));
    if (!F.missing(search.minQuality)) p.set("min_quality", String(search.minQuality));
    return p;
  }

  function fromUrl(run) {
    const p = new URLSearchParams(location.search);
    const q = p.get("q");
    const similarRaw = p.get("similar");
    const similar = similarRaw !== null && /^\d+$/.test(similarRaw) ? Number(similarRaw) : null;
    el.q.value = similar === null && q !== null ? q : "";
    const k = parseInt(p.get("k"), 10);
    el.k.value = isFinite(k) ? String(k) : "20";
    cameras.setChecked(p.getAll("camera"));
    const num = (v) => (v === null || v === "" || !isFinite(Number(v)) ? null : Number(v));
    writeTime(el.since, num(p.get("since")));
    writeTime(el.until, num(p.get("until")));
    echoUtc();
    const mq = num(p.get("min_quality"));
    const mqOk = mq !== null && mq >= 0 && mq <= 1;
    if (mqOk && ![...el.minQuality.options].some((o) => o.value === String(mq))) {
      const opt = document.createElement("option");  // a link's own threshold keeps working
      opt.value = String(mq);
      opt.textContent = "\u2265 " + String(mq);
      el.minQuality.append(opt);
    }
    el.minQuality.value = mqOk ? String(mq) : "";
    if (!run) return;
    const filters = readForm();
    if (similar !== null) runSearch(Object.assign(filters, { similar }));
    else if (q) runSearch(filters);
    else {
      hideReference();
      clearResults();
      setStatus("");
      showError("");
    }
  }

  function pushSearch(search) {
    const url = location.pathname + "?" + paramsFor(search).toString();
    if (url !== location.pathname + location.search) history.pushState(null, "", url);
  }

  // ---------------------------------------------------------------- the reference of a "find similar"

  // The crop being searched by, shown above the results; the description box is emptied so it never
  // looks like the search that ran.
  function showReference(key, hit) {
    el.q.value = "";
    el.q.placeholder = "Or describe the person to search by text instead";
    el.reference.hidden = false;
    if (state.reference === key) return;
    state.reference = key;
    el.reference.dataset.key = String(key);
    if (state.referenceImages) state.referenceImages.close();
    const loader = new ImageLoader();
    state.referenceImages = loader;
    el.referenceImg.removeAttribute("src");
    el.referenceImg.hidden = false;
    el.referenceImg.alt = "The reference crop, row " + key;
    loader.load(el.referenceImg, F.missing(hit) ? API + "/crops/" + key + ".jpg" : hit.crop_url, () => {
      if (state.referenceImages === loader) el.referenceImg.hidden = true;
    });
    if (!F.missing(hit)) labelReference(key, hit);
    else {
      labelReference(key, null);
      api("/rows/" + encodeURIComponent(key)).then((res) => {
        if (state.reference === key && res.row) labelReference(key, res.row);
      }).catch(() => { /* the search itself reports an unknown key */ });
    }
  }

  function labelReference(key, hit) {
    el.referenceLabel.textContent = "";
    el.referenceLabel.append("row " + key);
    if (!hit) return;
    if (F.isPicture(hit)) el.referenceLabel.append(" \u00b7 picture ", F.bdi(F.fileName(hit.source), "source-name"));
    if (!F.missing(hit.camera)) el.referenceLabel.append(" \u00b7 ", F.bdi(hit.camera, "camera-name"));
    if (!F.missing(hit.timestamp)) el.referenceLabel.append(" \u00b7 " + F.fmtTime(hit.timestamp));
  }

  function hideReference() {
    el.reference.hidden = true;
    el.q.placeholder = TEXT_PLACEHOLDER;
    state.reference = null;
    if (state.referenceImages) state.referenceImages.close();
    state.referenceImages = null;
    el.referenceImg.removeAttribute("src");
  }

  // The reference's ×: back to the last description searched (run again), or to an empty search box.
  function returnToText() {
    const search = Object.assign(readForm(), { q: state.lastText });
    hideReference();
    el.q.value = search.q;
    pushSearch(search);
    if (search.q) runSearch(search);
    else {
      clearResults();
      setStatus("");
    }
    el.q.focus();
  }

  // ---------------------------------------------------------------- searching

  function clearResults() {
    if (state.gridImages) state.gridImages.close();
    state.gridImages = null;
    el.results.textContent = "";
    el.scoreLegend.hidden = true;
  }

  function requestFor(search) {
    const body = {
      k: search.k,
      camera: search.cameras.length ? search.cameras : null,
      since: search.since,
      until: search.until,
    };
    if (!F.missing(search.minQuality)) body.min_quality = search.minQuality;
    if (isSimilar(search)) body.key = search.similar; else body.text = search.q;
    return { path: isSimilar(search) ? "/query/image" : "/query", body };
  }

  async function runSearch(search) {
    if (!state.ready) return;
    const seq = ++state.searchSeq;
    if (state.searchAbort) state.searchAbort.abort();
    const abort = new AbortController();
    state.searchAbort = abort;
    if (isSimilar(search)) showReference(search.similar, search.referenceHit);
    else {
      hideReference();
      state.lastText = search.q;
    }
    const request = requestFor(search);
    showError("");
    setStatus(isSimilar(search) ? "Searching for crops like row " + search.similar + "\u2026" : "Searching\u2026");
    el.results.setAttribute("aria-busy", "true");
    try {
      const res = await api(request.path, { method: "POST", json: request.body, signal: abort.signal });
      if (seq !== state.searchSeq) return;
      renderResults(res, search);
    } catch (e) {
      if (e.name === "AbortError" || seq !== state.searchSeq) return;
      clearResults();
      setStatus("");
      showError(e.message);
    } finally {
      if (seq === state.searchSeq) el.results.removeAttribute("aria-busy");
    }
  }

  function renderResults(res, search) {
    clearResults();
    const hits = res.hits || [];
    const took = F.missing(res.took_ms) ? null : Number(res.took_ms);
    const n = hits.length + (hits.length === 1 ? " hit" : " hits");
    const timing = took === null ? "" : " in " + (took < 10 ? took.toFixed(1) : Math.round(took)) + " ms";
    const what = isSimilar(search) ? "Similar to row " + search.similar + ": " : "";
    setStatus(what + n + timing);  // the gallery's size is in the header (/info), not in every answer
    if (!hits.length) {
      const empty = document.createElement("div");
      empty.className = "empty";
      empty.innerHTML = "<strong>No matches.</strong> Try a broader description, more cameras or a wider time range.";
      if (state.info && state.info.rows === 0) empty.innerHTML = "<strong>The gallery is empty.</strong> Ingest some video first.";
      el.results.append(empty);
      return;
    }
    el.scoreLegend.textContent = "Score: cosine similarity of " +
      (isSimilar(search) ? "the reference crop" : "the description") + " and each crop, \u22121\u20261 " +
      "(higher is closer). Compare scores within one search, not across searches.";
    el.scoreLegend.hidden = false;
    const loader = new ImageLoader();
    state.gridImages = loader;
    const list = document.createElement("ol");
    list.className = "grid";
    hits.forEach((hit, i) => list.append(card(hit, i + 1, loader)));
    el.results.append(list);
  }

  // What a card says under its crop: a video row's track, camera and time; a picture's file name.
  function cardMeta(hit) {
    const picture = F.isPicture(hit);
    const meta = F.span("meta");
    const line1 = F.span("line1");
    const score = F.span("score", F.fmtScore(hit.score));
    score.title = "score: " + SCORE_HINT;
    line1.append(score, picture ? F.span("kind", "Picture")
      : F.span("track", F.missing(hit.track) ? "no track" : "track " + hit.track));
    meta.append(line1);
    if (!F.missing(hit.camera)) {
      const camera = F.span("camera-name");
      camera.append(F.bdi(hit.camera));
      camera.title = F.escapeControls(hit.camera);
      meta.append(camera);
    }
    if (picture) {
      const name = F.span("source-name");
      name.append(F.bdi(F.fileName(hit.source) || "row " + hit.key));
      name.title = F.escapeControls(hit.source || "");
      meta.append(name);
    }
    if (!picture || !F.missing(hit.timestamp)) meta.append(timeText(hit.timestamp));
    if (!F.missing(hit.quality)) {
      const q = F.span("quality", "crop quality " + hit.quality.toFixed(2));
      q.title = "how surely the crop shows one whole person (0-1)";
      meta.append(q);
    }
    if (hit.superseded) meta.append(F.span("superseded", "superseded source"));
    return meta;
  }

  function card(hit, rank, loader) {
    // <li> holds two buttons side by side: the card itself (opens the frame view) and "Similar".
    const li = document.createElement("li");
    li.className = "hit-item" + (F.isPicture(hit) ? " picture" : "");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "hit-card";
    b.dataset.key = String(hit.key);
    b.setAttribute("aria-label", "Rank " + rank + ", score " + F.fmtScore(hit.score) + ", " + rowLabel(hit) +
      ". Open " + (F.isPicture(hit) ? "picture" : "frame") + " view.");

    const thumb = F.span("thumb");
    const img = document.createElement("img");
    img.alt = "";
    img.decoding = "async";
    thumb.append(img, F.span("rank", "#" + rank));
    loader.load(img, hit.crop_url, (e) => {
      img.remove();
      const miss = F.span("missing", e.status ? "crop " + e.status : "no crop");
      miss.title = e.message;
      thumb.append(miss);
    });
    b.append(thumb, cardMeta(hit));
    b.addEventListener("click", () => frameView.open(hit, b));

    const similar = document.createElement("button");
    similar.type = "button";
    similar.className = "secondary small similar";
    similar.textContent = "Similar";
    similar.title = "Find crops that look like this one";
    similar.setAttribute("aria-label", "Find crops similar to rank " + rank);
    similar.addEventListener("click", () => findSimilar(hit));

    li.append(b, similar);
    return li;
  }

  // "date time zone" as two unbreakable parts, so a narrow card wraps between the date and the time only
  function timeText(t) {
    const out = F.span("time");
    const p = !F.missing(t) && F.isWallTime(t) ? F.wallParts(t, false) : null;
    if (p) out.append(F.span("nowrap", p.date), " ", F.span("nowrap", p.time + " " + p.zone));
    else out.textContent = F.fmtTime(t);
    if (p) out.title = F.fmtUtc(t);
    return out;
  }

  function findSimilar(hit) {
    const search = Object.assign(readForm(), { similar: hit.key, referenceHit: hit });
    pushSearch(search);
    runSearch(search);
    // on a phone the operator is down among the results: bring the reference (right above them) into view
    el.reference.scrollIntoView({ block: "nearest" });
  }

  // ---------------------------------------------------------------- wiring

  el.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const search = readForm();
    if (!search.q) {
      showError(state.reference === null ? "Type a description of the person to search for."
        : "Type a description to search by text, or use \u201cSimilar\u201d on a result to search by a crop.");
      el.q.focus();
      return;
    }
    if (search.k < 1 || search.k > 200) {
      showError("k must be between 1 and 200.");
      el.k.focus();
      return;
    }
    if (!state.ready) {
      showError(el.auth.hidden ? "The server is not ready yet." : "Enter an access key first.");
      return;
    }
    pushSearch(search);
    runSearch(search);
  });

  for (const b of document.querySelectorAll("button.example")) {
    b.addEventListener("click", () => {
      el.q.value = b.textContent;
      el.form.requestSubmit ? el.form.requestSubmit() : el.form.dispatchEvent(new Event("submit", { cancelable: true }));
    });
  }

  el.since.addEventListener("input", echoUtc);
  el.until.addEventListener("input", echoUtc);
  el.referenceClear.addEventListener("click", returnToText);

  el.authForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = el.apiKey.value.trim();
    if (!key) return;
    setApiKey(key);
    state.keyRejected = false;
    el.apiKey.value = "";
    state.ready = false;
    boot();
  });

  el.forgetKey.addEventListener("click", () => {
    setApiKey("");
    state.ready = false;
    hideReference();
    clearResults();
    setStatus("");
    boot();
  });

  window.addEventListener("popstate", () => {
    frameView.close();
    if (state.ready) fromUrl(true);
  });

  boot();
})();
