// SEN person search, part 1 of 5: how values read on the page (times, scores, names) and small DOM helpers.
// Plain script, loaded first; it defines window.SenPage.format and nothing else.
"use strict";

(function () {
  // Timestamps from year 2000 on are Unix seconds; smaller ones are seconds into a video.
  const UNIX_MIN = 946684800;
  const clock = { wall: false }; // the gallery's clock is wall-clock time: date inputs, dates shown

  function setWallClock(wall) { clock.wall = !!wall; }
  function wallClock() { return clock.wall; }
  function isWallTime(t) { return clock.wall || Number(t) >= UNIX_MIN; }

  function oneLine(s) { return String(s).replace(/\s+/g, " ").trim(); }
  function pad(n, w) { return String(n).padStart(w || 2, "0"); }
  function fmtInt(n) { return Number(n).toLocaleString("en-US"); }
  function fmtScore(s) { return s === null || s === undefined ? "\u2014" : Number(s).toFixed(3); }
  function missing(v) { return v === null || v === undefined; }

  // The browser's offset from UTC at that date, as "UTC", "UTC+1", "UTC\u22125", "UTC+5:30".
  function zoneLabel(d) {
    const minutes = -d.getTimezoneOffset();
    if (!minutes) return "UTC";
    const abs = Math.abs(minutes);
    const h = Math.floor(abs / 60);
    const m = abs % 60;
    return "UTC" + (minutes > 0 ? "+" : "\u2212") + h + (m ? ":" + pad(m) : "");
  }

  function dateParts(d, utc) {
    const get = (name) => d[(utc ? "getUTC" : "get") + name]();
    return {
      date: get("FullYear") + "-" + pad(get("Month") + 1) + "-" + pad(get("Date")),
      time: pad(get("Hours")) + ":" + pad(get("Minutes")) + ":" + pad(get("Seconds")),
    };
  }

  // A wall-clock time as {date, time, zone} in local time (utc: in UTC), to the tenth of a second.
  function wallParts(t, utc) {
    const tenthsTotal = Math.round(Number(t) * 10); // rounded once, so .95 never prints as :60
    const d = new Date(Math.floor(tenthsTotal / 10) * 1000);
    if (isNaN(d.getTime())) return null;
    const tenths = ((tenthsTotal % 10) + 10) % 10;
    const parts = dateParts(d, utc);
    return { date: parts.date, time: parts.time + (tenths ? "." + tenths : ""), zone: utc ? "UTC" : zoneLabel(d) };
  }

  function fmtSeconds(t) { return Number(t).toFixed(1) + " s into the video"; }

  // A row's time as operators read it: local date and time with its zone, or seconds into the video.
  function fmtTime(t) {
    if (missing(t)) return "no time";
    if (!isWallTime(t)) return fmtSeconds(t);
    const p = wallParts(t, false);
    return p ? p.date + " " + p.time + " " + p.zone : String(t);
  }

  function fmtUtc(t) {
    const p = missing(t) ? null : wallParts(t, true);
    return p ? p.date + " " + p.time + " UTC" : "";
  }

  // The short caption under a strip's crop: the local clock time, or the seconds.
  function fmtClock(t) {
    if (missing(t)) return "\u2014";
    if (!isWallTime(t)) return Number(t).toFixed(1) + " s";
    const p = wallParts(t, false);
    return p ? p.time.replace(/\.\d$/, "") : String(t);
  }

  // seconds <-> a time input's value: datetime-local in the browser's time zone, or plain seconds
  function toInputValue(t) {
    if (missing(t) || t === "" || isNaN(Number(t))) return "";
    if (!clock.wall) return String(t);
    const d = new Date(Math.floor(Number(t)) * 1000);
    if (isNaN(d.getTime())) return "";
    const p = dateParts(d, false);
    return p.date + "T" + p.time;
  }

  function fromInputValue(v) {
    v = (v || "").trim();
    if (!v) return null;
    if (!clock.wall) {
      const n = Number(v);
      return isFinite(n) ? n : null;
    }
    const m = /^(\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?$/.exec(v);
    if (!m) return null;
    const d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6] || 0));
    return isNaN(d.getTime()) ? null : d.getTime() / 1000;
  }

  // Pictures (ingested images) have no frame, track or video time: frame is -1.
  function isPicture(hit) { return !missing(hit.frame) && Number(hit.frame) < 0; }

  // The last part of a path, whichever separator it uses; a bare file name is its own name.
  function fileName(path) {
    if (missing(path) || path === "") return "";
    const parts = String(path).split(/[\\/]/).filter((s) => s !== "");
    return parts.length ? parts[parts.length - 1] : String(path);
  }

  // Gallery-provided text in plain strings (titles, aria-labels): first-strong isolates, so a
  // right-to-left override in a camera name cannot reorder the words around it.
  function isolate(text) { return "\u2068" + String(text) + "\u2069"; }

  function span(cls, text) {
    const s = document.createElement("span");
    if (cls) s.className = cls;
    if (text !== undefined) s.textContent = text;
    return s;
  }

  // Invisible direction controls (overrides, embeddings, isolates, marks) written out as \u escapes.
  const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
  function escapeControls(text) {
    return String(text).replace(BIDI_CONTROLS, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
  }

  // Gallery-provided text in the DOM: a <bdi> isolates it the same way. A name that holds direction
  // controls still reads reordered inside its own box, so it is marked and its title spells it out.
  function bdi(text, cls) {
    const b = document.createElement("bdi");
    if (cls) b.className = cls;
    b.textContent = String(text);
    if (escapeControls(text) !== String(text)) {
      b.classList.add("has-controls");
      b.title = "holds invisible direction controls: " + escapeControls(text);
    }
    return b;
  }

  function note(text) {
    const p = document.createElement("p");
    p.className = "hint";
    p.textContent = text;
    return p;
  }

  window.SenPage = window.SenPage || {};
  window.SenPage.format = {
    UNIX_MIN, setWallClock, wallClock, isWallTime, oneLine, pad, fmtInt, fmtScore, missing, zoneLabel,
    wallParts, fmtSeconds, fmtTime, fmtUtc, fmtClock, toInputValue, fromInputValue, isPicture, fileName,
    isolate, escapeControls, span, bdi, note,
  };
})();
