// SEN person search, part 2 of 5: talking to this server's API with the tab's access key, and images
// fetched with that key (shown as blob: URLs). Defines window.SenPage.api.
"use strict";

(function () {
  const API = "/api/v1";
  const KEY_STORE = "sen_infer.api_key";
  const IMG_CONCURRENCY = 6;
  const { oneLine } = window.SenPage.format;

  let memoryKey = ""; // used when session storage is disabled; gone on reload either way
  let onUnauthorized = () => {};

  function apiKey() {
    let stored = "";
    try { stored = sessionStorage.getItem(KEY_STORE) || ""; } catch (e) { /* storage disabled */ }
    return stored || memoryKey;
  }

  function setApiKey(key) {
    memoryKey = key;
    try {
      if (key) sessionStorage.setItem(KEY_STORE, key); else sessionStorage.removeItem(KEY_STORE);
    } catch (e) { /* storage disabled */ }
  }

  // The page decides what a 401 means for its key panel; this module only reports it.
  function whenUnauthorized(callback) { onUnauthorized = callback; }

  function authHeaders(extra) {
    const headers = Object.assign({}, extra || {});
    const key = apiKey();
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
      if (resp.status === 401) onUnauthorized();
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
        if (e.status === 401) onUnauthorized();
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

  window.SenPage.api = { API, apiKey, setApiKey, whenUnauthorized, api, ApiError, ImageLoader };
})();
