// SEN person search, part 3 of 5: the camera filter. Chips that wrap; past a dozen cameras, the first
// dozen (and every ticked one) with "Show all N cameras", and a box that filters by name.
// Defines window.SenPage.CameraPicker.
"use strict";

(function () {
  const { fmtInt, bdi, span, escapeControls } = window.SenPage.format;
  const COLLAPSED = 12; // chips shown before "show all": two or three rows on a phone, one or two on a desktop

  class CameraPicker {
    constructor(parts) {
      this.list = parts.list;       // the chips
      this.filter = parts.filter;   // <input type=search>, shown past COLLAPSED cameras
      this.toggle = parts.toggle;   // "Show all N cameras" / "Show fewer"
      this.clear = parts.clear;     // "Untick all"
      this.summary = parts.summary; // "2 of 140 ticked"
      this.expanded = false;
      this.matches = null;          // chips matching the filter box, or null when it is empty
      this.filter.addEventListener("input", () => this.update());
      this.toggle.addEventListener("click", () => { this.expanded = !this.expanded; this.update(); });
      this.clear.addEventListener("click", () => { this.setChecked([]); });
      // ticking a chip changes only the counts: hiding it under the operator's finger would lose focus
      this.list.addEventListener("change", () => this.updateCounts());
    }

    boxes() { return [...this.list.querySelectorAll("input[type=checkbox]")]; }

    checked() { return this.boxes().filter((b) => b.checked).map((b) => b.value); }

    showMessage(text) {
      this.list.textContent = "";
      this.list.append(span("hint", text));
      this.update();
    }

    render(cameras) {
      this.list.textContent = "";
      // rows stored with no camera cannot be chosen by name: the filter lists named cameras only
      const named = cameras.filter((c) => c.name !== null && c.name !== undefined);
      if (!named.length) {
        this.showMessage("no cameras yet");
        return;
      }
      for (const cam of named) this.add(cam.name, cam.rows);
      this.update();
    }

    add(name, rows) {
      const label = document.createElement("label");
      label.className = "camera";
      label.title = escapeControls(name); // the whole name where the chip cuts it short
      const box = document.createElement("input");
      box.type = "checkbox";
      box.name = "camera";
      box.value = name;
      label.append(box, bdi(name, "camera-label"));
      if (rows !== undefined && rows !== null) label.append(span("hint count", "(" + fmtInt(rows) + ")"));
      this.list.append(label);
      return box;
    }

    // Ticks exactly `names`; a name the gallery does not list (an old link's) gets a chip of its own.
    setChecked(names) {
      const wanted = new Set(names);
      const boxes = this.boxes();
      if (!boxes.length && wanted.size) this.list.textContent = "";
      for (const b of boxes) b.checked = wanted.has(b.value);
      for (const name of wanted) {
        if (!boxes.some((b) => b.value === name)) this.add(name).checked = true;
      }
      this.update();
    }

    update() {
      const boxes = this.boxes();
      const many = boxes.length > COLLAPSED;
      this.filter.hidden = !many;
      this.filter.placeholder = "Filter " + boxes.length + " cameras";
      const needle = many ? this.filter.value.trim().toLowerCase() : "";
      let matches = 0;
      boxes.forEach((box, i) => {
        const match = !needle || box.value.toLowerCase().includes(needle);
        if (match) matches++;
        const shown = match && (!many || needle || this.expanded || i < COLLAPSED || box.checked);
        box.closest("label").hidden = !shown;
      });
      this.toggle.hidden = !many || !!needle;
      this.toggle.textContent = this.expanded ? "Show fewer" : "Show all " + boxes.length + " cameras";
      this.toggle.setAttribute("aria-expanded", String(this.expanded));
      this.list.classList.toggle("expanded", many && (this.expanded || !!needle));
      this.matches = needle ? matches : null;
      this.updateCounts();
    }

    updateCounts() {
      const matches = this.matches;
      const total = this.boxes().length;
      const ticked = this.checked().length;
      this.clear.hidden = ticked === 0;
      const parts = [];
      if (matches !== null) parts.push(matches === 0 ? "no camera matches" : matches + " match");
      if (total > COLLAPSED || ticked) {
        parts.push(ticked ? ticked + " of " + total + " ticked" : "all " + total + " searched");
      }
      this.summary.textContent = parts.join(" \u00b7 ");
      this.summary.hidden = !parts.length;
    }
  }

  window.SenPage.CameraPicker = CameraPicker;
})();
