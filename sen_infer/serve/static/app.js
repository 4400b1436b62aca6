// SEN person search: the operator's page. Plain JS, no build step, nothing fetched but this server's API.
"use strict";

(function () {
  const API = "/api/v1";
  const KEY_STORE = "sen_infer.api_key";
  const UNIX_MIN = 1e9; // timestamps above this are Unix times (the contract's rule)
  const IMG_CONCURRENCY = 6;

  const $ = (id) => document.getElementById(id);
  const el = {
    info: $("info"), auth: $("auth"), authNote: $("auth-note"), authForm: $("auth-form"),
    apiKey: $("api-key"), forgetKey: $("forget-key"),
    form: $("search"), q: $("q"), k: $("k"), since: $("since"), until: $("until"), minQuality: $("min-quality"),
    sinceLabel: $("since-label"), untilLabel: $("until-label"), cameraList: $("camera-list"),
    status: $("status"), error: $("error"), results: $("results"),
    dialog: $("frame-view"), frameTitle: $("frame-title"), frameImg: $("frame-img"),
    frameError: $("frame-error"), frameDetails: $("frame-details"), frameSimilar: $("frame-similar"),
    frameClose: $("frame-close"), trackStrip: $("track-strip"), nearbyStrip: $("nearby-strip"),
  };

  let memoryKey = "";
  const state = {
    info: null,
    unix: false,          // hit times are Unix times: datetime-local inputs, dates shown
    ready: false,         // info and cameras loaded
    searchSeq: 0,         // the latest search; older answers are dropped
    searchAbort: null,
    gridImages: null,     // ImageLoader for the result cards
    frameImages: null,    // ImageLoader for the frame view
    frameSeq: 0,
    frameHit: null,       // the row the frame view shows
    opener: null,         // the element focus returns to when the frame view closes
  };

  // ---------------------------------------------------------------- API

  function apiKey() {
    try { return sessionStorage.getItem(KEY_STORE) || ""; } catch (e) { return ""; }
  }

  function setApiKey(key) {
    memoryKey = key; // used when session storage is disabled; gone on reload either way
    try {
      if (key) sessionStorage.setItem(KEY_STORE, key); else sessionStorage.removeItem(KEY_STORE);
    } catch (e) { /* storage disabled */ }
  }

  function authHeaders(extra) {
    const headers = Object.assign({}, extra || {});
    const key = apiKey() || memoryKey;
    if (key) headers["Authorization"] = "Bearer " + key;
    return headers;
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function errorFrom(resp) {
    let message = resp.status + " " + (resp.statusText || "error");
    try {
      const body = await resp.json();
      if (body && typeof body.error === "string" && body.error) message = body.error;
      else if (body && body.detail) message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (e) { /* not JSON */ }
    return new ApiError(resp.status, oneLine(message));
  }

  async function api(path, options) {
    options = options || {};
    const init = { method: options.method || "GET", headers: authHeaders(options.headers), signal: options.signal };
    if (options.json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.json);
    }
    let resp;
    try {
      resp = await fetch(API + path, init);
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError(0, "Cannot reach the server (" + (e.message || e) + ")");
    }
    if (!resp.ok) {
      const err = await errorFrom(resp);
      if (resp.status === 401) needKey();
      throw err;
    }
    return resp.json();
  }

  // Images go through fetch() so they carry the key; each loader owns its object URLs and revokes them.
  class ImageLoader {
    constructor() { this.urls = []; this.queue = []; this.active = 0; this.closed = false; }

    load(img, url, onError) {
      this.queue.push({ img, url, onError });
      this.pump();
    }

    pump() {
      while (!this.closed && this.active < IMG_CONCURRENCY && this.queue.length) {
        const job = this.queue.shift();
        this.active++;
        this.fetchOne(job).finally(() => { this.active--; this.pump(); });
      }
    }

    async fetchOne(job) {
      try {
        const resp = await fetch(job.url, { headers: authHeaders() });
        if (!resp.ok) throw await errorFrom(resp);
        const blob = await resp.blob();
        if (this.closed) return;
        const objectUrl = URL.createObjectURL(blob);
        this.urls.push(objectUrl);
        job.img.src = objectUrl;
      } catch (e) {
        if (this.closed) return;
        if (e.status === 401) needKey();
        if (job.onError) job.onError(e);
      }
    }

    close() {
      this.closed = true;
      this.queue = [];
      for (const u of this.urls) URL.revokeObjectURL(u);
      this.urls = [];
    }
  }

  // ---------------------------------------------------------------- formatting

  function oneLine(s) { return String(s).replace(/\s+/g, " ").trim(); }

  function pad(n, w) { return String(n).padStart(w || 2, "0"); }

  function fmtTime(t) {
    if (t === null || t === undefined) return "no time";
    if (state.unix || t > UNIX_MIN) {
      const tenthsTotal = Math.round(t * 10); // to the tenth of a second, rounded once
      const d = new Date(Math.floor(tenthsTotal / 10) * 1000);
      if (isNaN(d.getTime())) return String(t);
      const tenths = ((tenthsTotal % 10) + 10) % 10;
      const frac = tenths ? "." + tenths : "";
      return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
        pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + frac + " UTC";
    }
    return "t=" + Number(t).toFixed(1) + " s";
  }

  function fmtScore(s) { return s === null || s === undefined ? "\u2014" : Number(s).toFixed(3); }

  function fmtInt(n) { return Number(n).toLocaleString("en-US"); }

  // seconds <-> the value of a datetime-local input read as UTC
  function toInputValue(t) {
    if (t === null || t === undefined || t === "" || isNaN(Number(t))) return "";
    if (!state.unix) return String(t);
    const d = new Date(Number(t) * 1000);
    return isNaN(d.getTime()) ? "" : d.toISOString().slice(0, 19);
  }

  function fromInputValue(v) {
    v = (v || "").trim();
    if (!v) return null;
    if (!state.unix) {
      const n = Number(v);
      return isFinite(n) ? n : null;
    }
    const iso = v.length === 16 ? v + ":00Z" : v + "Z";
    const ms = Date.parse(iso);
    return isNaN(ms) ? null : ms / 1000;
  }

  // ---------------------------------------------------------------- messages

  function setStatus(text) { el.status.textContent = text || ""; }

  function showError(message) {
    if (message) {
      el.error.textContent = oneLine(message);
      el.error.hidden = false;
    } else {
      el.error.textContent = "";
      el.error.hidden = true;
    }
  }

  function needKey() {
    const had = !!(apiKey() || memoryKey);
    setAuth("need", had ? "That access key was not accepted; enter a valid one." : "This server needs an access key.");
    if (!el.dialog.open && document.activeElement !== el.apiKey) el.apiKey.focus();
  }

  // mode: "off" (no panel), "need" (ask for a key), "ok" (a key is in use)
  function setAuth(mode, text) {
    el.auth.hidden = mode === "off";
    el.auth.dataset.mode = mode;
    el.authForm.hidden = mode !== "need";
    $("auth-help").hidden = mode !== "need";
    el.forgetKey.hidden = !(apiKey() || memoryKey);
    if (text) el.authNote.textContent = text;
  }

  // ---------------------------------------------------------------- start-up

  async function boot() {
    showError("");
    try {
      state.info = await api("/info");
    } catch (e) {
      el.info.textContent = e.status === 401 ? "Access key required" : "Server not available";
      el.cameraList.textContent = "";
      el.cameraList.append(note(e.status === 401 ? "listed once a key is accepted" : "unavailable"));
      if (e.status !== 401) showError(e.message);
      else setStatus("Enter an access key to search.");
      return;
    }
    const info = state.info;
    const span = info.time_span;
    state.unix = !!(span && span.length === 2 && span[0] !== null && span[0] > UNIX_MIN);
    renderInfo(info);
    setTimeMode(span);
    if (info.auth) setAuth("ok", "An access key is in use for this tab.");
    else setAuth("off");
    try {
      const cams = await api("/cameras");
      renderCameras(cams.cameras || []);
    } catch (e) {
      el.cameraList.textContent = "cameras unavailable";
      showError(e.message);
    }
    state.ready = true;
    fromUrl(true);
  }

  function renderInfo(info) {
    const parts = [];
    if (info.model) parts.push("Model " + info.model);
    if (info.backend) parts.push(info.backend);
    parts.push(fmtInt(info.rows || 0) + " rows");
    if (info.tracks !== undefined && info.tracks !== null) parts.push(fmtInt(info.tracks) + " tracks");
    const cams = info.cameras || [];
    parts.push(cams.length + (cams.length === 1 ? " camera" : " cameras"));
    if (info.time_span && info.time_span.length === 2 && info.time_span[0] !== null) {
      parts.push(fmtTime(info.time_span[0]) + " \u2013 " + fmtTime(info.time_span[1]));
    }
    if (info.damaged_rows) parts.push(fmtInt(info.damaged_rows) + " damaged rows (not served)");
    if (info.version) parts.push("v" + info.version);
    el.info.textContent = parts.join(" \u00b7 ");
  }

  function setTimeMode(span) {
    for (const [input, label, name] of [[el.since, el.sinceLabel, "Since"], [el.until, el.untilLabel, "Until"]]) {
      if (state.unix) {
        // no min/max: a gallery that is still ingesting grows past the span it had when the page loaded
        input.type = "datetime-local";
        input.step = "1";
        input.removeAttribute("min");
        input.removeAttribute("placeholder");
        label.textContent = name + " (UTC)";
      } else {
        input.type = "number";
        input.step = "any";
        input.min = "0";
        label.textContent = name + " (s)";
        input.placeholder = span && span[0] !== null ? (name === "Since" ? String(Math.floor(span[0])) : String(Math.ceil(span[1]))) : "";
      }
    }
  }

  function renderCameras(cameras) {
    el.cameraList.textContent = "";
    if (!cameras.length) {
      el.cameraList.innerHTML = '<span class="hint">no cameras yet</span>';
      return;
    }
    for (const cam of cameras) addCameraBox(cam.name, cam.rows);
  }

  function addCameraBox(name, rows) {
    const label = document.createElement("label");
    label.className = "camera";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.name = "camera";
    box.value = name;
    label.append(box, " " + name);
    if (rows !== undefined && rows !== null) {
      const n = document.createElement("span");
      n.className = "hint";
      n.textContent = " (" + fmtInt(rows) + ")";
      label.append(n);
    }
    el.cameraList.append(label);
    return box;
  }

  // ---------------------------------------------------------------- the URL <-> the form

  function readForm() {
    const k = parseInt(el.k.value, 10);
    return {
      q: el.q.value.trim(),
      k: isFinite(k) ? k : 20,
      cameras: [...el.cameraList.querySelectorAll("input[type=checkbox]:checked")].map((b) => b.value),
      since: readTime(el.since),
      until: readTime(el.until),
      minQuality: el.minQuality.value === "" ? null : Number(el.minQuality.value),
    };
  }

  // A time from the URL keeps its exact value while its input still shows it (the datetime input
  // holds whole seconds); once the operator edits the input, the input's value counts.
  function readTime(input) {
    const exact = input.dataset.exact;
    if (exact !== undefined && exact !== "" && toInputValue(Number(exact)) === input.value) return Number(exact);
    return fromInputValue(input.value);
  }

  function writeTime(input, t) {
    input.value = toInputValue(t);
    if (t === null) delete input.dataset.exact; else input.dataset.exact = String(t);
  }

  function paramsFor(search) {
    const p = new URLSearchParams();
    if (search.similar !== undefined && search.similar !== null) p.set("similar", String(search.similar));
    else p.set("q", search.q);
    p.set("k", String(search.k));
    for (const c of search.cameras) p.append("camera", c);
    if (search.since !== null) p.set("since", String(search.since));
    if (search.until !== null) p.set("until", String(search.until));
    if (search.minQuality !== null && search.minQuality !== undefined) p.set("min_quality", String(search.minQuality));
    return p;
  }

  function fromUrl(run) {
    const p = new URLSearchParams(location.search);
    const q = p.get("q");
    const similarRaw = p.get("similar");
    if (q !== null) el.q.value = q;
    const k = parseInt(p.get("k"), 10);
    el.k.value = isFinite(k) ? String(k) : "20";
    const wanted = new Set(p.getAll("camera"));
    const boxes = [...el.cameraList.querySelectorAll("input[type=checkbox]")];
    for (const b of boxes) b.checked = wanted.has(b.value);
    for (const name of wanted) {
      if (!boxes.some((b) => b.value === name)) addCameraBox(name).checked = true;
    }
    const num = (v) => (v === null || v === "" || !isFinite(Number(v)) ? null : Number(v));
    writeTime(el.since, num(p.get("since")));
    writeTime(el.until, num(p.get("until")));
    const mq = num(p.get("min_quality"));
    if (mq !== null && mq >= 0 && mq <= 1 && ![...el.minQuality.options].some((o) => o.value === String(mq))) {
      const opt = document.createElement("option");  // a link's own threshold keeps working
      opt.value = String(mq);
      opt.textContent = "\u2265 " + String(mq);
      el.minQuality.append(opt);
    }
    el.minQuality.value = mq !== null && mq >= 0 && mq <= 1 ? String(mq) : "";
    if (!run) return;
    const filters = readForm();
    const similar = similarRaw !== null && /^\d+$/.test(similarRaw) ? Number(similarRaw) : null;
    if (similar !== null) {
      runSearch(Object.assign(filters, { similar }));
    } else if (q) {
      runSearch(filters);
    } else {
      clearResults();
      setStatus("");
      showError("");
    }
  }

  function pushSearch(search) {
    const url = location.pathname + "?" + paramsFor(search).toString();
    if (url !== location.pathname + location.search) history.pushState(null, "", url);
  }

  // ---------------------------------------------------------------- searching

  function clearResults() {
    if (state.gridImages) state.gridImages.close();
    state.gridImages = null;
    el.results.textContent = "";
  }

  async function runSearch(search) {
    if (!state.ready) return;
    const seq = ++state.searchSeq;
    if (state.searchAbort) state.searchAbort.abort();
    const abort = new AbortController();
    state.searchAbort = abort;
    const isSimilar = search.similar !== undefined && search.similar !== null;
    const body = {
      k: search.k,
      camera: search.cameras.length ? search.cameras : null,
      since: search.since,
      until: search.until,
    };
    if (search.minQuality !== null && search.minQuality !== undefined) body.min_quality = search.minQuality;
    let path = "/query";
    if (isSimilar) { path = "/query/image"; body.key = search.similar; } else body.text = search.q;
    showError("");
    setStatus(isSimilar ? "Searching for crops like row " + search.similar + "\u2026" : "Searching\u2026");
    el.results.setAttribute("aria-busy", "true");
    try {
      const res = await api(path, { method: "POST", json: body, signal: abort.signal });
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
    const took = res.took_ms !== undefined && res.took_ms !== null ? Number(res.took_ms) : null;
    const n = hits.length + (hits.length === 1 ? " hit" : " hits");
    const timing = took === null ? "" : " in " + (took < 10 ? took.toFixed(1) : Math.round(took)) + " ms";
    const what = search.similar !== undefined && search.similar !== null ? "Similar to row " + search.similar + ": " : "";
    const rows = res.rows !== undefined ? " \u00b7 " + fmtInt(res.rows) + " gallery rows" : "";
    setStatus(what + n + timing + rows);
    if (!hits.length) {
      const empty = document.createElement("div");
      empty.className = "empty";
      empty.innerHTML = "<strong>No matches.</strong> Try a broader description, more cameras or a wider time range.";
      if (res.rows === 0) empty.innerHTML = "<strong>The gallery is empty.</strong> Ingest some video first.";
      el.results.append(empty);
      return;
    }
    const loader = new ImageLoader();
    state.gridImages = loader;
    const list = document.createElement("ol");
    list.className = "grid";
    hits.forEach((hit, i) => list.append(card(hit, i + 1, loader)));
    el.results.append(list);
  }

  function card(hit, rank, loader) {
    // <li> holds two buttons side by side: the card itself (opens the frame view) and "Similar".
    const li = document.createElement("li");
    li.className = "hit-item";
    const b = document.createElement("button");
    b.type = "button";
    b.className = "hit-card";
    b.dataset.key = String(hit.key);
    b.setAttribute("aria-label", "Rank " + rank + ", score " + fmtScore(hit.score) + ", camera " +
      (hit.camera || "unknown") + ", " + fmtTime(hit.timestamp) + ", " + trackText(hit) + ". Open frame view.");

    const thumb = span("thumb");
    const img = document.createElement("img");
    img.alt = "";
    img.decoding = "async";
    thumb.append(img, span("rank", "#" + rank));
    loader.load(img, hit.crop_url, (e) => {
      img.remove();
      const miss = span("missing", e.status ? "crop " + e.status : "no crop");
      miss.title = e.message;
      thumb.append(miss);
    });

    const meta = span("meta");
    const line1 = span("line1");
    const score = span("score", fmtScore(hit.score));
    score.title = "similarity score";
    line1.append(score, span("track", trackText(hit)));
    const camera = span("camera-name", hit.camera || "\u2014");
    camera.title = hit.camera || "";
    meta.append(line1, camera, timeSpan(hit.timestamp));
    if (hit.quality !== null && hit.quality !== undefined) {
      const q = span("quality", "crop quality " + hit.quality.toFixed(2));
      q.title = "how surely the crop shows one whole person (0-1)";
      meta.append(q);
    }
    if (hit.superseded) meta.append(span("superseded", "superseded source"));
    b.append(thumb, meta);
    b.addEventListener("click", () => openFrame(hit, b));

    const similar = document.createElement("button");
    similar.type = "button";
    similar.className = "secondary small similar";
    similar.textContent = "Similar";
    similar.title = "Find crops that look like this one";
    similar.setAttribute("aria-label", "Find crops similar to rank " + rank);
    similar.addEventListener("click", () => findSimilar(hit.key));

    li.append(b, similar);
    return li;
  }

  // "date time UTC" as two unbreakable parts, so a narrow card wraps between the date and the time only
  function timeSpan(t) {
    const text = fmtTime(t);
    const out = span("time");
    const m = /^(\S+) (.+)$/.exec(text);
    if (m && (state.unix || t > UNIX_MIN)) out.append(span("nowrap", m[1]), " ", span("nowrap", m[2]));
    else out.textContent = text;
    return out;
  }

  function span(cls, text) {
    const s = document.createElement("span");
    s.className = cls;
    if (text !== undefined) s.textContent = text;
    return s;
  }

  function trackText(hit) {
    return hit.track === null || hit.track === undefined ? "no track" : "track " + hit.track;
  }

  function findSimilar(key) {
    const search = Object.assign(readForm(), { similar: key });
    pushSearch(search);
    runSearch(search);
  }

  // ---------------------------------------------------------------- the frame view

  function openFrame(hit, opener) {
    if (opener && !el.dialog.contains(opener)) state.opener = opener;
    state.frameHit = hit;
    el.dialog.dataset.key = String(hit.key);
    const seq = ++state.frameSeq;
    if (state.frameImages) state.frameImages.close();
    const loader = new ImageLoader();
    state.frameImages = loader;

    el.frameTitle.textContent = (hit.camera || "unknown camera") + " \u00b7 " + fmtTime(hit.timestamp);
    el.frameImg.removeAttribute("src");
    el.frameImg.hidden = false;
    el.frameImg.alt = "Frame " + hit.frame + " of " + (hit.camera || "the video") + " with the person boxed";
    el.frameError.hidden = true;
    el.frameError.textContent = "";
    renderDetails(hit);
    el.trackStrip.textContent = "";
    el.nearbyStrip.textContent = "";
    el.trackStrip.append(note("loading\u2026"));
    el.nearbyStrip.append(note("loading\u2026"));

    loader.load(el.frameImg, hit.frame_url, (e) => {
      if (seq !== state.frameSeq) return;
      el.frameImg.hidden = true;
      el.frameError.textContent = "Frame not available: " + e.message;
      el.frameError.hidden = false;
    });

    if (!el.dialog.open) {
      if (typeof el.dialog.showModal === "function") el.dialog.showModal();
      else el.dialog.setAttribute("open", "");
    }
    el.frameClose.focus();

    api("/rows/" + encodeURIComponent(hit.key)).then((res) => {
      if (seq !== state.frameSeq) return;
      if (res.row) renderDetails(Object.assign({}, res.row, { score: hit.score, names: res.names || [] }));
      renderStrip(el.trackStrip, res.track || [], hit.key, loader, "no other crops in this track");
      renderStrip(el.nearbyStrip, res.nearby || [], hit.key, loader, "nothing else nearby");
    }).catch((e) => {
      if (seq !== state.frameSeq) return;
      el.trackStrip.textContent = "";
      el.nearbyStrip.textContent = "";
      el.trackStrip.append(note("Could not load neighbours: " + e.message));
    });
  }

  function note(text) {
    const p = document.createElement("p");
    p.className = "hint";
    p.textContent = text;
    return p;
  }

  function renderDetails(hit) {
    const rows = [
      ["Score", fmtScore(hit.score)],
      ["Camera", hit.camera || "\u2014"],
      ["Time", fmtTime(hit.timestamp)],
      ["Track", hit.track === null || hit.track === undefined ? "\u2014" : String(hit.track)],
      ["Person", hit.person === null || hit.person === undefined ? "\u2014" : String(hit.person)],
      ["Crop quality", hit.quality === null || hit.quality === undefined ? "\u2014" : hit.quality.toFixed(2) +
        " (how surely the crop shows one whole person)"],
      ["Frame", String(hit.frame)],
      ["Box", Array.isArray(hit.bbox) ? hit.bbox.map((v) => Math.round(v)).join(", ") : "\u2014"],
      ["Row", String(hit.key)],
      ["Source", hit.source || "\u2014"],
    ];
    const others = (hit.names || []).filter((n) => n !== hit.source);
    if (others.length) rows.push(["Also named", others.join("\n")]);
    if (hit.superseded) rows.push(["Status", "superseded (the source was replaced)"]);
    el.frameDetails.textContent = "";
    for (const [k, v] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      if (k === "Source" || k === "Also named") dd.className = "source";
      el.frameDetails.append(dt, dd);
    }
  }

  function renderStrip(container, hits, currentKey, loader, emptyText) {
    container.textContent = "";
    if (!hits.length) {
      container.append(note(emptyText));
      return;
    }
    for (const h of hits) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "strip-item" + (h.key === currentKey ? " current" : "");
      b.dataset.key = String(h.key);
      const label = (h.camera || "") + " " + fmtTime(h.timestamp) + " \u00b7 " + trackText(h);
      b.title = label;
      b.setAttribute("aria-label", "Open row " + h.key + ": " + label);
      if (h.key === currentKey) b.setAttribute("aria-current", "true");
      const img = document.createElement("img");
      img.alt = "";
      const cap = document.createElement("span");
      cap.className = "cap";
      cap.textContent = state.unix ? fmtClock(h.timestamp) : fmtTime(h.timestamp);
      b.append(img, cap);
      loader.load(img, h.crop_url, () => img.classList.add("broken"));
      b.addEventListener("click", () => openFrame(h, null));
      container.append(b);
    }
    const current = container.querySelector(".current");
    if (current) { // centre the shown row in its strip without scrolling the dialog
      container.scrollLeft = Math.max(0, current.offsetLeft - container.offsetLeft - (container.clientWidth - current.offsetWidth) / 2);
    }
  }

  function fmtClock(t) {
    if (t === null || t === undefined) return "\u2014";
    const d = new Date(Math.round(t * 10) * 100);
    return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }

  function closeFrame() { if (el.dialog.open) el.dialog.close(); }

  el.dialog.addEventListener("close", () => {
    state.frameSeq++;
    if (state.frameImages) state.frameImages.close();
    state.frameImages = null;
    el.frameImg.removeAttribute("src");
    const opener = state.opener;
    state.opener = null;
    if (opener && opener.isConnected) opener.focus();
  });
  el.dialog.addEventListener("click", (ev) => { if (ev.target === el.dialog) closeFrame(); }); // the backdrop
  el.frameClose.addEventListener("click", closeFrame);
  el.frameSimilar.addEventListener("click", () => {
    const hit = state.frameHit;
    if (!hit) return;
    state.opener = null;
    closeFrame();
    findSimilar(hit.key);
    el.results.focus({ preventScroll: true });
  });

  // ---------------------------------------------------------------- wiring

  el.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const search = readForm();
    if (!search.q) {
      showError("Type a description of the person to search for.");
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

  el.authForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = el.apiKey.value.trim();
    if (!key) return;
    setApiKey(key);
    el.apiKey.value = "";
    state.ready = false;
    boot();
  });

  el.forgetKey.addEventListener("click", () => {
    setApiKey("");
    state.ready = false;
    clearResults();
    setStatus("");
    boot();
  });

  window.addEventListener("popstate", () => {
    closeFrame();
    if (state.ready) fromUrl(true);
  });

  boot();
})();
