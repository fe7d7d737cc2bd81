(function () {
  "use strict";
  function show(value) {
    var a = Math.abs(value);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) { return value.toPrecision(4); }
    return String(Math.round(value * 1e5) / 1e5);
  }
  Array.prototype.forEach.call(document.querySelectorAll("svg.plot[data-values]"), function (svg) {
    var values = JSON.parse(svg.getAttribute("data-values"));
    var frames = Number(svg.getAttribute("data-frames"));
    var left = Number(svg.getAttribute("data-left")), right = Number(svg.getAttribute("data-right"));
    var cursor = svg.querySelector(".cursor"), readout = svg.querySelector(".readout");
    function hide() { cursor.setAttribute("visibility", "hidden"); readout.textContent = ""; }
    svg.addEventListener("pointermove", function (event) {
      var box = svg.getBoundingClientRect(), view = svg.viewBox.baseVal;
      var x = (event.clientX - box.left) * view.width / box.width;
      var t = (x - left) / (view.width - left - right);
      if (!(t >= 0 && t <= 1) || values.length === 0) { hide(); return; }
      var frame = Math.round(t * (frames - 1)), i = Math.round(t * (values.length - 1));
      cursor.setAttribute("x1", x); cursor.setAttribute("x2", x); cursor.setAttribute("visibility", "visible");
      readout.textContent = "frame " + frame + ": " + show(values[i]);
    });
    svg.addEventListener("pointerleave", hide);
  });
  Array.prototype.forEach.call(document.querySelectorAll("video.deliverable"), function (video) {
    function loaded() {
      video.setAttribute("data-duration", String(video.duration));
      video.setAttribute("data-video-width", String(video.videoWidth));
      video.setAttribute("data-video-height", String(video.videoHeight));
    }
    if (video.readyState >= 1) { loaded(); } else { video.addEventListener("loadedmetadata", loaded); }
    video.addEventListener("error", function () {
      video.setAttribute("data-error", String(video.error ? video.error.code : "unknown"));
      // A take of a job with variations names its own note; the page's one video uses "video-note".
      var note = document.getElementById(video.getAttribute("data-note") || "video-note");
      if (note) { note.textContent = "This browser cannot play the video; open the file itself."; }
    });
  });
  document.body.setAttribute("data-report-ready", "1");
})();
