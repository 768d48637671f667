// Live dashboard updates: one websocket per page, server push only (webhooks/live.py). No polling, no money math:
// the server sends escaped HTML fragments and prices as strings.
(function () {
  "use strict";
  var body = document.body;
  var topics = (body.dataset.topics || "").split(/\s+/).filter(Boolean);
  if (!topics.length || !("WebSocket" in window)) {
    return;
  }
  var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host +
    "/live?topics=" + encodeURIComponent(topics.join(","));
  var attempt = 0;
  var timer = null;

  function replaceFragments(fragments) {
    Object.keys(fragments).forEach(function (id) {
      var el = document.getElementById(id);
      if (el) {
        el.outerHTML = fragments[id];
      }
    });
  }

  function setPrices(prices) {
    Object.keys(prices).forEach(function (symbol) {
      var entry = prices[symbol];
      document.querySelectorAll("[data-price]").forEach(function (el) {
        if (el.getAttribute("data-price") === symbol) {
          el.textContent = entry.price;
        }
      });
      document.querySelectorAll("[data-price-at]").forEach(function (el) {
        if (el.getAttribute("data-price-at") === symbol) {
          if (el.tagName === "TIME") {
            el.setAttribute("datetime", entry.at);
          }
          el.title = entry.at;
        }
      });
    });
  }

  function connect() {
    timer = null;
    var ws = new WebSocket(url);
    ws.onopen = function () {
      attempt = 0;
      body.dataset.live = "connected";
    };
    ws.onmessage = function (event) {
      var msg;
      try {
        msg = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (msg.type === "fragments" && msg.fragments) {
        replaceFragments(msg.fragments);
      } else if (msg.type === "prices" && msg.prices) {
        setPrices(msg.prices);
      }
    };
    ws.onclose = function () {
      body.dataset.live = "offline";
      if (timer === null) {
        // Exponential backoff with full jitter, capped at 30 s; a reconnect gets a fresh snapshot.
        var cap = Math.min(30000, 500 * Math.pow(2, attempt));
        attempt += 1;
        timer = setTimeout(connect, Math.random() * cap);
      }
    };
  }

  body.dataset.live = "connecting";
  connect();
})();
