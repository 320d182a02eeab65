// ess ui: the only script of the dashboard (vendored, no build step, no CDN).
// 1. Forms with class "confirm" ask before they submit (the cluster buttons).
// 2. An element with data-events is replaced live by the server-sent "work" events.
// 3. Buttons with data-calendar colour the calendar by bytes or by files.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form.confirm").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm || "Are you sure?")) {
        event.preventDefault();
      }
    });
  });
  document.querySelectorAll("button[data-calendar]").forEach(function (button) {
    button.addEventListener("click", function () {
      var grid = document.getElementById("calendar");
      grid.classList.remove("by-bytes", "by-files");
      grid.classList.add(button.dataset.calendar);
    });
  });
  var live = document.querySelector("[data-events]");
  if (live && window.EventSource) {
    var source = new EventSource(live.dataset.events);
    source.addEventListener("work", function (event) {
      live.innerHTML = event.data;
      live.dataset.updated = String(Date.now());
    });
    window.addEventListener("beforeunload", function () { source.close(); });
  }
});
