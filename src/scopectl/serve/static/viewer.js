/* scopectl serve: the capture page.  The phone input and the enhanced image in synchronised deep zoom
   (side by side, or one over the other with a swipe slider), a scale bar in µm, the model's card.
   No inline scripts (the page's Content-Security-Policy forbids them): everything is wired here. */
(function () {
  "use strict";
  var root = document.getElementById("viewer-root");
  if (!root || typeof OpenSeadragon === "undefined") { return; }
  var captureId = root.dataset.capture;
  var api = "/api/captures/" + captureId;
  var timing = (window.scopectlTiming = { firstTileMs: null, firstTileDrawnMs: null, enhancedShownMs: null });
  var viewers = (window.scopectlViewers = {}); // exposed for diagnosis (and the browser tests)
  var state = { capture: null, inputPx: null, inputPxAssumed: false, enhancedPx: null, mode: "side" };

  function $(id) { return document.getElementById(id); }

  function makeViewer(elementId, tileSources) {
    var element = $(elementId);
    var waiting = element.querySelector(".waiting");
    if (waiting) { waiting.remove(); }
    var v = OpenSeadragon({
      element: element,
      prefixUrl: "/static/vendor/openseadragon/images/",
      tileSources: tileSources,
      drawer: "canvas",
      showNavigator: false,
      showRotationControl: false,
      gestureSettingsTouch: { pinchRotate: false },
      visibilityRatio: 0.5,
      minZoomImageRatio: 0.5,
      maxZoomPixelRatio: 4,
      immediateRender: true,
      crossOriginPolicy: false,
      timeout: 30000
    });
    v.addHandler("tile-loaded", function () {
      if (timing.firstTileMs === null) {
        timing.firstTileMs = performance.now();
        requestAnimationFrame(function () { timing.firstTileDrawnMs = performance.now(); });
      }
    });
    var bar = document.createElement("div");
    bar.className = "scalebar";
    bar.id = elementId.replace("view-", "bar-");
    var old = element.querySelector(".scalebar");
    if (old) { old.remove(); }
    v.addControl(bar, { anchor: OpenSeadragon.ControlAnchor.BOTTOM_LEFT, autoFade: false });
    v.scopectlBar = bar;
    v.addHandler("animation", function () { drawScale(v); });
    v.addHandler("open", function () { drawScale(v); });
    v.addHandler("resize", function () { drawScale(v); });
    return v;
  }

  /* A bar of a round length (1, 2 or 5 × 10^n µm) about 80-200 screen pixels long. */
  function drawScale(v) {
    var bar = v.scopectlBar;
    var item = v.world.getItemAt(v.world.getItemCount() - 1);
    var px = v.scopectlPixelSizeUm;
    if (!bar || !item) { return; }
    if (!px) { bar.textContent = "scale unknown"; bar.style.width = "auto"; return; }
    var imageZoom = item.viewportToImageZoom(v.viewport.getZoom(true)); // screen px per image px
    var umPerScreenPx = px / imageZoom;
    var target = 120 * umPerScreenPx;
    var pow = Math.pow(10, Math.floor(Math.log10(target)));
    var nice = [1, 2, 5, 10].map(function (m) { return m * pow; }).reduce(function (best, cand) {
      return Math.abs(cand - target) < Math.abs(best - target) ? cand : best;
    });
    bar.style.width = (nice / umPerScreenPx).toFixed(1) + "px";
    var label = nice >= 1000 ? (nice / 1000) + " mm" : (nice >= 1 ? nice : nice.toPrecision(1)) + " µm";
    bar.textContent = label + (v.scopectlAssumed ? " (pixel size assumed)" : "");
  }

  /* Keep two viewers on the same field: same centre and zoom in viewport coordinates (both images span
     the same field, each normalised to width 1). */
  function syncViewers(a, b) {
    var busy = false;
    function follow(src, dst) {
      return function () {
        if (busy || !dst.world.getItemCount()) { return; }
        busy = true;
        dst.viewport.zoomTo(src.viewport.getZoom(), null, true);
        dst.viewport.panTo(src.viewport.getCenter(), true);
        busy = false;
      };
    }
    a.addHandler("viewport-change", follow(a, b));
    b.addHandler("viewport-change", follow(b, a));
  }

  function setStatus(cap) {
    var el = $("status");
    el.textContent = cap.status;
    el.className = "status status-" + cap.status;
    var err = $("error-text");
    if (cap.status === "failed") {
      err.hidden = false;
      err.textContent = cap.error || "the enhancement failed";
      var waiting = document.querySelector("#view-enhanced .waiting");
      if (waiting) { waiting.textContent = "Enhancement failed: " + (cap.error || ""); }
    } else { err.hidden = true; }
  }

  function showInput(cap) {
    if (viewers.input) { return; }
    viewers.input = makeViewer("view-input", cap.links.input_dzi);
    viewers.input.scopectlPixelSizeUm = state.inputPx;
    viewers.input.scopectlAssumed = state.inputPxAssumed;
  }

  function showEnhanced(cap) {
    if (viewers.enhanced) { return; }
    var job = cap.job;
    state.enhancedPx = job.enhanced.pixel_size_um;
    viewers.enhanced = makeViewer("view-enhanced", cap.links.enhanced_dzi);
    viewers.enhanced.scopectlPixelSizeUm = state.enhancedPx;
    viewers.enhanced.addHandler("open", function () {
      timing.enhancedShownMs = performance.now();
      root.dataset.enhanced = "shown";
      if (viewers.input && viewers.input.world.getItemCount()) {
        viewers.enhanced.viewport.zoomTo(viewers.input.viewport.getZoom(), null, true);
        viewers.enhanced.viewport.panTo(viewers.input.viewport.getCenter(), true);
      }
    });
    syncViewers(viewers.input, viewers.enhanced);
    $("mode-swipe").disabled = false;
    $("model-name").textContent = "· " + job.model + (job.model_checked ? "" : " (unchecked)");
    ["dl-enhanced", "dl-enhanced-tiff"].forEach(function (id) { $(id).hidden = false; });
    loadModel(job);
  }

  function showSwipe() {
    var cap = state.capture;
    if (!viewers.swipe) {
      viewers.swipe = makeViewer("view-swipe", [cap.links.input_dzi, cap.links.enhanced_dzi]);
      viewers.swipe.scopectlPixelSizeUm = state.enhancedPx;
      viewers.swipe.world.addHandler("add-item", function () { applySwipe(); drawScale(viewers.swipe); });
    }
    applySwipe();
  }

  /* The enhanced image (drawn on top) is clipped to the left part, up to the slider. */
  function applySwipe() {
    var v = viewers.swipe;
    if (!v || v.world.getItemCount() < 2) { return; }
    var top = v.world.getItemAt(1);
    var size = top.getContentSize();
    var fraction = Number($("swipe-slider").value) / 100;
    top.setClip(new OpenSeadragon.Rect(0, 0, size.x * fraction, size.y));
    root.dataset.swipe = String(fraction);
    v.forceRedraw();
  }

  function setMode(mode) {
    state.mode = mode;
    $("mode-side").classList.toggle("on", mode === "side");
    $("mode-swipe").classList.toggle("on", mode === "swipe");
    $("side").hidden = mode !== "side";
    $("swipe").hidden = mode !== "swipe";
    if (mode === "swipe") {
      showSwipe();
      if (viewers.input && viewers.input.world.getItemCount()) {
        viewers.swipe.viewport.zoomTo(viewers.input.viewport.getZoom(), null, true);
        viewers.swipe.viewport.panTo(viewers.input.viewport.getCenter(), true);
      }
    }
  }

  function fact(dl, name, value) {
    if (value === null || value === undefined || value === "") { return; }
    var dt = document.createElement("dt"); dt.textContent = name;
    var dd = document.createElement("dd"); dd.textContent = value;
    dl.appendChild(dt); dl.appendChild(dd);
  }

  function loadModel(job) {
    fetch("/api/models/" + encodeURIComponent(job.model), { headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (m) {
        var box = $("model-card");
        box.textContent = "";
        if (!m) { box.textContent = job.model + " (its card is no longer available)"; return; }
        var c = m.card || {};
        var h = document.createElement("p");
        var badge = document.createElement("span");
        badge.className = "badge badge-" + m.state; badge.textContent = m.state;
        h.appendChild(document.createTextNode(m.name + " "));
        h.appendChild(badge);
        box.appendChild(h);
        if (m.warning) {
          var warn = $("unchecked-warning");
          warn.hidden = false; warn.textContent = m.warning;
          var w2 = document.createElement("p"); w2.className = "warning"; w2.textContent = m.warning;
          box.appendChild(w2);
        }
        var dl = document.createElement("dl"); dl.className = "card-facts";
        fact(dl, "architecture", c.architecture);
        fact(dl, "ratio", c.ratio);
        fact(dl, "sample type", c.sample_type);
        fact(dl, "input pixel", c.input_pixel_size_um && c.input_pixel_size_um.toPrecision(4) + " µm");
        fact(dl, "output pixel", c.target_pixel_size_um && c.target_pixel_size_um.toPrecision(4) + " µm");
        if (c.training) {
          fact(dl, "trained on", c.training.dataset);
          fact(dl, "patches", c.training.train_patches + " train / " + c.training.val_patches + " validation");
          fact(dl, "epochs", c.training.epochs_completed);
        }
        var q = c.quality;
        if (q) {
          fact(dl, "SSIM (validation)", q.network_ssim.toFixed(3) + " vs bicubic " + q.bicubic_ssim.toFixed(3));
          fact(dl, "CIE-94 (validation)", q.network_cie94.toFixed(2) + " vs bicubic " + q.bicubic_cie94.toFixed(2) + " (lower is better)");
          fact(dl, "pairs", q.pairs);
        }
        Object.keys(c.validation || {}).forEach(function (k) {
          var v = c.validation[k];
          fact(dl, k, typeof v === "number" ? v.toPrecision(4) : v);
        });
        fact(dl, "weights SHA-256", c.weights_sha256 && c.weights_sha256.slice(0, 16) + "…");
        fact(dl, "enhanced on", job.device + " (" + job.precision + ") in " + (job.seconds || 0).toFixed(2) + " s");
        box.appendChild(dl);
        var img = document.createElement("img");
        img.className = "curve"; img.alt = "training and validation curve";
        img.addEventListener("error", function () { img.remove(); });
        img.src = "/api/models/" + encodeURIComponent(job.model) + "/training-curve.png";
        box.appendChild(img);
      });
  }

  function update(cap) {
    state.capture = cap;
    setStatus(cap);
    if (cap.pixel_size_um) { state.inputPx = cap.pixel_size_um; state.inputPxAssumed = false; }
    else if (cap.job && cap.job.input_pixel_size_um) { state.inputPx = cap.job.input_pixel_size_um; state.inputPxAssumed = true; }
    showInput(cap);
    if (viewers.input) {
      viewers.input.scopectlPixelSizeUm = state.inputPx;
      viewers.input.scopectlAssumed = state.inputPxAssumed;
      drawScale(viewers.input);
    }
    if (cap.status === "done") { showEnhanced(cap); }
  }

  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  async function poll() {
    var embedded = document.getElementById("capture-data");
    if (embedded) { // the page carries the capture's state: no round trip before the first tiles
      var now = JSON.parse(embedded.textContent);
      update(now);
      if (now.status === "done" || now.status === "failed") { return; }
    }
    for (;;) {
      var response;
      try {
        response = await fetch(api + "?wait_s=20", { headers: { Accept: "application/json" } });
      } catch (e) { await sleep(2000); continue; }
      if (response.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); return; }
      if (!response.ok) { await sleep(2000); continue; }
      var cap = await response.json();
      update(cap);
      if (cap.status === "done" || cap.status === "failed") { return; }
    }
  }

  $("mode-side").addEventListener("click", function () { setMode("side"); });
  $("mode-swipe").addEventListener("click", function () { setMode("swipe"); });
  $("swipe-slider").addEventListener("input", applySwipe);
  poll();
})();
