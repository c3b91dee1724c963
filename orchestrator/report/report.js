// orch report: inlined into the page by orchestrator/report/html.py.
// Shows one job's details in the panel; the page works without this (#detail-<id> links).
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var panel = document.getElementById("panel");

  function select(id) {
    var detail = document.getElementById("detail-" + id);
    if (!panel || !detail) {
      return false;
    }
    document.querySelectorAll(".detail.shown, td.cell.selected").forEach(function (el) {
      el.classList.remove("shown", "selected");
    });
    detail.classList.add("shown");
    var cell = document.getElementById("cell-" + id);
    if (cell) {
      cell.classList.add("selected");
    }
    panel.setAttribute("data-job", id);
    panel.scrollTop = 0;
    // A log tail is read from its end: the last lines say what went wrong.
    detail.querySelectorAll("pre.log").forEach(function (pre) {
      pre.scrollTop = pre.scrollHeight;
    });
    return true;
  }

  // #job=<id> (what this script writes), or #detail-/#cell-<id> (plain links).
  function fromHash() {
    var m = /^#(?:job=|detail-|cell-)(.+)$/.exec(window.location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  }

  function firstFailure() {
    var item = document.querySelector("#failures li[data-job]");
    return item ? item.getAttribute("data-job") : null;
  }

  document.addEventListener("click", function (ev) {
    var link = ev.target.closest ? ev.target.closest("[data-select]") : null;
    if (!link) {
      return;
    }
    var id = link.getAttribute("data-select");
    if (select(id)) {
      ev.preventDefault();
      history.replaceState(null, "", "#job=" + encodeURIComponent(id));
      var below = panel.parentElement.classList.contains("stacked");
      if (below || window.matchMedia("(max-width: 1000px)").matches) {
        panel.scrollIntoView({ behavior: "smooth", block: "start" });
      }
    }
  });

  window.addEventListener("hashchange", function () {
    var id = fromHash();
    if (id) {
      select(id);
    }
  });

  var toggle = document.getElementById("only-problems");
  var grid = document.querySelector("table.grid");
  if (toggle && grid) {
    toggle.addEventListener("change", function () {
      grid.classList.toggle("only-problems", toggle.checked);
    });
  }

  var initial = fromHash();
  if (!(initial && select(initial))) {
    initial = firstFailure();
    if (initial) {
      select(initial);
    }
  }
})();
