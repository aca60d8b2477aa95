// codirector studio: live regions fed by server-sent events, and the memory scrubber.
// Plain JavaScript shipped with the package: no build step, no dependency. Without it every page
// still works (forms post, the scrubber has a submit button); with it pages follow the log live.
(function () {
  "use strict";

  var fetched = {}; // region id -> the HTML it was last given, so an unchanged region is left alone

  // Updating a region changes only what changed: nodes are matched by id (or a clip's data-clip)
  // and otherwise by position, equal ones are kept as they are, and a <video>/<audio> that still
  // plays the same source is never touched, so a clip playing while the log moves keeps playing.
  function key(node) {
    return node.nodeType === 1 ? (node.id || node.getAttribute("data-clip") || null) : null;
  }

  function isMedia(node) {
    return node.nodeName === "VIDEO" || node.nodeName === "AUDIO";
  }

  function syncAttributes(old, fresh) {
    Array.prototype.slice.call(old.attributes).forEach(function (a) {
      if (!fresh.hasAttribute(a.name)) old.removeAttribute(a.name);
    });
    Array.prototype.forEach.call(fresh.attributes, function (a) {
      if (old.getAttribute(a.name) !== a.value) old.setAttribute(a.name, a.value);
    });
  }

  // Make `old` look like `fresh` in place; false when it cannot (another kind of node, another clip).
  function morph(old, fresh) {
    if (old.nodeType !== fresh.nodeType || old.nodeName !== fresh.nodeName) return false;
    if (old.nodeType !== 1) {
      if (old.nodeValue !== fresh.nodeValue) old.nodeValue = fresh.nodeValue;
      return true;
    }
    if (isMedia(old)) return old.getAttribute("src") === fresh.getAttribute("src");
    if (old.isEqualNode(fresh)) return true;
    syncAttributes(old, fresh);
    morphChildren(old, fresh);
    return true;
  }

  function morphChildren(old, fresh) {
    var keyed = {};
    Array.prototype.forEach.call(old.childNodes, function (c) { var k = key(c); if (k) keyed[k] = c; });
    var cursor = old.firstChild;
    Array.prototype.slice.call(fresh.childNodes).forEach(function (f) {
      var k = key(f), match = k ? keyed[k] : null;
      if (match) {
        delete keyed[k];
        if (match !== cursor) old.insertBefore(match, cursor);
        else cursor = cursor.nextSibling;
        if (!morph(match, f)) old.replaceChild(f, match);
        return;
      }
      if (cursor && !key(cursor) && morph(cursor, f)) { cursor = cursor.nextSibling; return; }
      old.insertBefore(f, cursor);
    });
    while (cursor) { var next = cursor.nextSibling; old.removeChild(cursor); cursor = next; }
  }

  function swap(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    doc.querySelectorAll("[data-live-region]").forEach(function (fresh) {
      var old = document.getElementById(fresh.id);
      if (!old || fetched[fresh.id] === fresh.innerHTML) return;
      fetched[fresh.id] = fresh.innerHTML;
      morphChildren(old, fresh);
    });
    if (doc.title) document.title = doc.title;
  }

  // At most one refresh in flight and, while following a run, at most one every `gap` ms (the last
  // change always gets its refresh): a page never costs the server more than the run it watches.
  var busy = false, again = null, gap = 0, last = 0, timer = null;
  function refresh(url) {
    url = url || location.href;
    if (busy) { again = url; return; }
    var wait = last + gap - Date.now();
    if (wait > 0) {
      again = url;
      if (!timer) timer = setTimeout(function () { timer = null; var next = again; again = null; refresh(next); }, wait);
      return;
    }
    busy = true;
    last = Date.now();
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(swap)
      .catch(function () { /* the next event retries */ })
      .then(function () {
        busy = false;
        if (again && !timer) { var next = again; again = null; refresh(next); }
      });
  }

  function indicate(state, text) {
    var el = document.querySelector("[data-live-indicator]");
    document.body.setAttribute("data-live-state", state);
    if (!el) return;
    el.hidden = false;
    el.setAttribute("data-state", state);
    el.textContent = text;
  }

  function follow(main) {
    if (!window.EventSource) return;
    gap = +(main.getAttribute("data-live-gap") || 800);
    var source = new EventSource(main.getAttribute("data-live"));
    indicate("connecting", "connecting…");
    source.addEventListener("open", function () { indicate("connected", "live"); });
    source.addEventListener("progress", function (e) {
      var p = {};
      try { p = JSON.parse(e.data); } catch (err) { /* keep going */ }
      if (p.head !== undefined) {
        indicate("connected", (p.running ? "running" : "live") + " · " + p.shots_completed + " shots · " + p.head + " events");
      }
      refresh();
    });
    source.addEventListener("done", function () {
      source.close();
      refresh();
      indicate("done", "complete");
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) indicate("closed", "not live");
    });
  }

  // The memory scrubber: a slider move shows memory at that shot or position without a reload.
  function scrubTo(input) {
    var form = input.form;
    var params = new URLSearchParams();
    form.querySelectorAll("input[type=hidden]").forEach(function (h) { params.set(h.name, h.value); });
    params.set(input.name, input.value);
    var url = form.getAttribute("action") + "?" + params.toString();
    history.replaceState(null, "", url);
    refresh(url);
  }

  document.addEventListener("input", function (e) {
    var input = e.target;
    if (!input.matches || !input.matches("input[data-scrub]")) return;
    var out = input.form && input.form.querySelector("output[for='" + input.id + "']");
    if (out) out.textContent = out.getAttribute("data-scrub-label").replace("{v}", input.value);
  });
  document.addEventListener("change", function (e) {
    if (e.target.matches && e.target.matches("input[data-scrub]")) scrubTo(e.target);
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-region]").forEach(function (r) { fetched[r.id] = null; });
    var main = document.querySelector("main[data-live]");
    if (main) follow(main);
  });
})();
