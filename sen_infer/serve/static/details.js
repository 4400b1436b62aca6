// SEN person search, part 4 of 5: the frame view, a dialog with one row's full frame (or picture), its
// details, the rest of its track and its camera's rows nearest in time. Defines window.SenPage.FrameView.
"use strict";

(function () {
  const F = window.SenPage.format;
  const { api, ImageLoader } = window.SenPage.api;
  const $ = (id) => document.getElementById(id);

  const SCORE_HINT = "cosine similarity of the query (the description, or the reference crop) and this crop, " +
    "\u22121\u20261, higher is closer; compare scores within one search, not across searches";

  // How a row is named in one line of plain text (aria-labels, titles): a picture by its file name.
  function rowLabel(hit) {
    const camera = F.missing(hit.camera) ? "" : "camera " + F.isolate(hit.camera);
    if (F.isPicture(hit)) {
      const when = F.missing(hit.timestamp) ? "" : F.fmtTime(hit.timestamp);
      const name = F.fileName(hit.source) || "row " + hit.key;
      return ["picture " + F.isolate(name), camera, when].filter(Boolean).join(", ");
    }
    const track = F.missing(hit.track) ? "no track" : "track " + hit.track;
    return [camera || "unknown camera", F.fmtTime(hit.timestamp), track].join(", ");
  }

  class FrameView {
    constructor(onFindSimilar) {
      this.onFindSimilar = onFindSimilar; // (key) => runs the search; the page owns searching
      this.dialog = $("frame-view");
      this.title = $("frame-title");
      this.img = $("frame-img");
      this.error = $("frame-error");
      this.details = $("frame-details");
      this.similar = $("frame-similar");
      this.closeButton = $("frame-close");
      this.trackWrap = $("track-wrap");
      this.trackStrip = $("track-strip");
      this.nearbyTitle = $("nearby-title");
      this.nearbyStrip = $("nearby-strip");
      this.seq = 0;         // the latest row shown; older answers are dropped
      this.loader = null;   // ImageLoader of the row shown
      this.hit = null;
      this.opener = null;   // the element focus returns to on close
      this.wire();
    }

    get isOpen() { return this.dialog.open; }

    wire() {
      this.dialog.addEventListener("close", () => this.closed());
      this.dialog.addEventListener("click", (ev) => { if (ev.target === this.dialog) this.close(); }); // the backdrop
      this.closeButton.addEventListener("click", () => this.close());
      this.similar.addEventListener("click", () => {
        if (!this.hit) return;
        const hit = this.hit;
        this.opener = null; // focus goes to the new results, not back to the old card
        this.close();
        this.onFindSimilar(hit);
      });
    }

    close() { if (this.dialog.open) this.dialog.close(); }

    closed() {
      this.seq++;
      if (this.loader) this.loader.close();
      this.loader = null;
      this.img.removeAttribute("src");
      const opener = this.opener;
      this.opener = null;
      if (opener && opener.isConnected) opener.focus();
    }

    open(hit, opener) {
      if (opener && !this.dialog.contains(opener)) this.opener = opener;
      this.hit = hit;
      this.dialog.dataset.key = String(hit.key);
      this.dialog.dataset.kind = F.isPicture(hit) ? "picture" : "frame";
      const seq = ++this.seq;
      if (this.loader) this.loader.close();
      const loader = new ImageLoader();
      this.loader = loader;

      this.renderTitle(hit);
      this.renderDetails(hit);
      this.resetStrips(hit);
      this.loadImage(hit, loader, seq);
      if (!this.dialog.open) {
        if (typeof this.dialog.showModal === "function") this.dialog.showModal();
        else this.dialog.setAttribute("open", "");
      }
      this.closeButton.focus();
      this.loadContext(hit, loader, seq);
    }

    renderTitle(hit) {
      this.title.textContent = "";
      if (F.isPicture(hit)) {
        this.title.append("Picture ", F.bdi(F.fileName(hit.source) || "row " + hit.key, "source-name"));
        if (!F.missing(hit.camera)) this.title.append(" \u00b7 ", F.bdi(hit.camera, "camera-name"));
        if (!F.missing(hit.timestamp)) this.title.append(" \u00b7 " + F.fmtTime(hit.timestamp));
      } else {
        this.title.append(F.bdi(F.missing(hit.camera) ? "unknown camera" : hit.camera, "camera-name"),
          " \u00b7 " + F.fmtTime(hit.timestamp));
      }
    }

    loadImage(hit, loader, seq) {
      this.img.removeAttribute("src");
      this.img.hidden = false;
      this.img.alt = F.isPicture(hit) ? "The picture " + F.isolate(F.fileName(hit.source)) + " with the person boxed"
        : "Frame " + hit.frame + " of " + F.isolate(hit.camera || "the video") + " with the person boxed";
      this.error.hidden = true;
      this.error.textContent = "";
      loader.load(this.img, hit.frame_url, (e) => {
        if (seq !== this.seq) return;
        this.img.hidden = true;
        this.error.textContent = (F.isPicture(hit) ? "Picture" : "Frame") + " not available: " + e.message;
        this.error.hidden = false;
      });
    }

    resetStrips(hit) {
      const picture = F.isPicture(hit);
      // a picture has no track: its "track" would be the picture alone
      this.trackWrap.hidden = picture;
      this.nearbyTitle.textContent = F.missing(hit.timestamp) ? "Same camera, stored around it"
        : "Same camera, nearby in time";
      this.trackStrip.textContent = "";
      this.nearbyStrip.textContent = "";
      this.trackStrip.append(F.note("loading\u2026"));
      this.nearbyStrip.append(F.note("loading\u2026"));
    }

    loadContext(hit, loader, seq) {
      api("/rows/" + encodeURIComponent(hit.key)).then((res) => {
        if (seq !== this.seq) return;
        if (res.row) this.renderDetails(Object.assign({}, res.row, { score: hit.score, names: res.names || [] }));
        this.renderStrip(this.trackStrip, res.track || [], hit.key, loader, "no other crops in this track");
        this.renderStrip(this.nearbyStrip, res.nearby || [], hit.key, loader, "nothing else nearby");
      }).catch((e) => {
        if (seq !== this.seq) return;
        this.trackStrip.textContent = "";
        this.nearbyStrip.textContent = "";
        const strip = this.trackWrap.hidden ? this.nearbyStrip : this.trackStrip;
        strip.append(F.note("Could not load neighbours: " + e.message));
      });
    }

    // [label, text or Node, class] for each line of the details list; pictures have no frame, track or video time
    detailRows(hit) {
      const picture = F.isPicture(hit);
      const score = F.span("score-value", F.fmtScore(hit.score));
      score.title = "score: " + SCORE_HINT;
      const rows = [["Score", score]];
      if (picture) rows.push(["Kind", "Picture (an ingested image, not video)"]);
      rows.push(["Camera", F.missing(hit.camera) ? "\u2014" : F.bdi(hit.camera)]);
      if (!picture || !F.missing(hit.timestamp)) rows.push(["Time", this.timeNode(hit.timestamp)]);
      if (!picture) rows.push(["Track", F.missing(hit.track) ? "\u2014" : String(hit.track)]);
      if (!F.missing(hit.person)) rows.push(["Person", String(hit.person)]);
      const unscored = picture ? "\u2014 (a picture is stored whole, not detected)" : "\u2014";
      rows.push(["Crop quality", F.missing(hit.quality) ? unscored : hit.quality.toFixed(2) +
        " (how surely the crop shows one whole person)"]);
      if (!picture) {
        rows.push(["Frame", String(hit.frame)]);
        rows.push(["Box", Array.isArray(hit.bbox) ? hit.bbox.map((v) => Math.round(v)).join(", ") : "\u2014"]);
      }
      rows.push(["Row", String(hit.key)]);
      const name = F.fileName(hit.source);
      if (picture) rows.push(["File", F.bdi(name || "\u2014"), "source"]);
      // viewer keys get the bare file name, admin keys the path: the path only where it says more
      if (!picture || (hit.source && hit.source !== name)) {
        rows.push(["Source", this.namesNode([hit.source || "\u2014"]), "source"]);
      }
      const others = (hit.names || []).filter((n) => n !== hit.source);
      if (others.length) rows.push(["Also named", this.namesNode(others), "source"]);
      if (hit.superseded) rows.push(["Status", "superseded (the source was replaced)"]);
      return rows;
    }

    // local time with the UTC equivalent under it when the browser is not on UTC
    timeNode(t) {
      const local = F.fmtTime(t);
      const utc = F.isWallTime(t) ? F.fmtUtc(t) : "";
      if (!utc || utc === local) return local;
      const out = document.createDocumentFragment();
      out.append(local, document.createElement("br"), F.span("hint", utc));
      return out;
    }

    namesNode(names) {
      const out = document.createDocumentFragment();
      names.forEach((name, i) => {
        if (i) out.append(document.createElement("br"));
        out.append(F.bdi(name));
      });
      return out;
    }

    renderDetails(hit) {
      this.details.textContent = "";
      for (const [label, value, cls] of this.detailRows(hit)) {
        const dt = document.createElement("dt");
        dt.textContent = label;
        const dd = document.createElement("dd");
        dd.append(value);
        if (cls) dd.className = cls;
        this.details.append(dt, dd);
      }
    }

    stripItem(h, currentKey, loader) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "strip-item" + (h.key === currentKey ? " current" : "");
      b.dataset.key = String(h.key);
      const label = rowLabel(h);
      b.title = label;
      b.setAttribute("aria-label", "Open row " + h.key + ": " + label);
      if (h.key === currentKey) b.setAttribute("aria-current", "true");
      const img = document.createElement("img");
      img.alt = "";
      const cap = F.span("cap", F.isPicture(h) && F.missing(h.timestamp) ? "picture" : F.fmtClock(h.timestamp));
      b.append(img, cap);
      loader.load(img, h.crop_url, () => img.classList.add("broken"));
      b.addEventListener("click", () => this.open(h, null));
      return b;
    }

    renderStrip(container, hits, currentKey, loader, emptyText) {
      container.textContent = "";
      if (!hits.length) {
        container.append(F.note(emptyText));
        return;
      }
      for (const h of hits) container.append(this.stripItem(h, currentKey, loader));
      const current = container.querySelector(".current");
      if (current) { // centre the shown row in its strip without scrolling the dialog
        container.scrollLeft = Math.max(0, current.offsetLeft - container.offsetLeft - (container.clientWidth - current.offsetWidth) / 2);
      }
    }
  }

  window.SenPage.FrameView = FrameView;
  window.SenPage.rowLabel = rowLabel;
  window.SenPage.SCORE_HINT = SCORE_HINT;
})();
