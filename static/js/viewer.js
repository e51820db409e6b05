// Lightbox image viewer: scroll through slices and frames, play, window presets and drag,
// zoom and pan, invert. Frames are rendered by the server (PNG at a given window) and fetched
// as blobs so neighbours can be prefetched even though every response is `no-store`.
// No inline script (CSP): configuration comes from the json_script element "viewer-config".
(function () {
  "use strict";

  var root = document.getElementById("viewer");
  var configEl = document.getElementById("viewer-config");
  if (!root || !configEl) return;
  var config = JSON.parse(configEl.textContent);
  var slices = config.slices || [];
  if (!slices.length) return;
  // Set again when the series strip switches series (applyConfig).

  var stage = document.getElementById("viewer-stage");
  var img = document.getElementById("viewer-image");
  var slider = document.getElementById("viewer-slider");
  var readout = document.getElementById("viewer-readout");
  var windowReadout = document.getElementById("viewer-window");
  var statusEl = document.getElementById("viewer-status");
  var preset = document.getElementById("viewer-preset");
  var playButton = document.getElementById("viewer-play");
  var download = document.getElementById("viewer-download");
  var toolbar = document.getElementById("viewer-toolbar");
  var scrub = document.getElementById("viewer-scrub");
  var readouts = root.querySelector(".viewer-readouts");
  var column = root.querySelector(".viewer-column");
  var strip = document.getElementById("series-strip");
  var title = document.getElementById("viewer-title");
  var notice = document.getElementById("viewer-notice");
  // Translated strings, from data-t-* attributes of the viewer (rendered with {% translate %}).
  var t = {
    image: root.dataset.tImage,
    frame: root.dataset.tFrame,
    position: root.dataset.tPosition,
    window: root.dataset.tWindow,
    windowFile: root.dataset.tWindowFile,
    play: root.dataset.tPlay,
    pause: root.dataset.tPause,
    error: root.dataset.tError,
  };

  var CACHE_SIZE = 80; // rendered frames kept as blob URLs (a few MB)
  var PREFETCH = 3; // neighbours fetched either side of the current image
  var MIN_ZOOM = 0.25;
  var MAX_ZOOM = 16;

  var state = {
    index: 0,
    zoom: 1,
    panX: 0,
    panY: 0,
    invert: false,
    window: null, // null = the file's own window, else {center, width}
    playing: false,
    drag: "window",
  };
  var shownUrl = null;
  var cache = new Map(); // url -> blob URL, in insertion (LRU) order
  var inflight = new Map(); // url -> Promise<blob URL>

  function format(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, key) {
      return values[key] !== undefined ? values[key] : "";
    });
  }

  function windowQuery(win) {
    return win ? "?c=" + Math.round(win.center) + "&w=" + Math.max(1, Math.round(win.width)) : "";
  }

  function urlFor(i, win) {
    return slices[i].src + windowQuery(win === undefined ? state.window : win);
  }

  function remember(url, blobUrl) {
    cache.set(url, blobUrl);
    while (cache.size > CACHE_SIZE) {
      var oldest = cache.keys().next().value;
      if (oldest === shownUrl) {
        // Keep the image on screen; drop the next oldest instead.
        var keep = cache.get(oldest);
        cache.delete(oldest);
        cache.set(oldest, keep);
        continue;
      }
      URL.revokeObjectURL(cache.get(oldest));
      cache.delete(oldest);
    }
  }

  function fetchFrame(url) {
    if (cache.has(url)) {
      var hit = cache.get(url);
      cache.delete(url);
      cache.set(url, hit);
      return Promise.resolve(hit);
    }
    if (inflight.has(url)) return inflight.get(url);
    var promise = fetch(url, { credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 422) {
          // The server's plain reason (for example "compressed with JPEG XL, which this
          // server cannot decode"): shown to the patient as it is.
          return response.text().then(function (reason) {
            var error = new Error(reason);
            error.reason = reason;
            throw error;
          });
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.blob();
      })
      .then(function (blob) {
        var blobUrl = URL.createObjectURL(blob);
        remember(url, blobUrl);
        return blobUrl;
      })
      .finally(function () {
        inflight.delete(url);
      });
    inflight.set(url, promise);
    return promise;
  }

  function setStatus(text) {
    statusEl.textContent = text || "";
    statusEl.hidden = !text;
  }

  function describe(i) {
    var s = slices[i];
    // Images count as the server counts them (one multi-frame clip is one image).
    var text = format(t.image, { n: s.image || i + 1, total: s.images || slices.length });
    if (s.frame) text += ", " + format(t.frame, { n: s.frame, total: s.frames });
    if (s.position !== null && s.position !== undefined) text += ", " + format(t.position, { mm: s.position.toFixed(1) });
    return text;
  }

  function updateReadouts() {
    var text = describe(state.index);
    readout.textContent = text;
    img.alt = text;
    slider.value = String(state.index + 1);
    slider.setAttribute("aria-valuetext", text);
    if (download) download.href = slices[state.index].download + windowQuery(state.window).replace("?", "&");
    windowReadout.textContent = state.window
      ? format(t.window, { c: Math.round(state.window.center), w: Math.round(state.window.width) })
      : t.windowFile;
  }

  // Load the current image; while one is loading, later requests only replace the wanted one,
  // so scrolling fast or dragging the window never builds a queue.
  var loading = false;
  var wanted = null;

  function display() {
    var url = urlFor(state.index);
    wanted = { url: url, index: state.index };
    if (loading) return;
    loading = true;
    var target = wanted;
    fetchFrame(target.url).then(
      function (blobUrl) {
        // Shown even if the user has moved on: while scrolling fast, intermediate images are
        // feedback, and the wanted one follows as soon as it arrives.
        img.src = blobUrl;
        img.hidden = false;
        shownUrl = target.url;
        img.dataset.slice = String(target.index + 1);
        setStatus("");
        done();
      },
      function (error) {
        // Never leave another slice's picture on screen under this slice's readout.
        img.hidden = true;
        shownUrl = null;
        setStatus((error && error.reason) || slices[target.index].error || t.error);
        done();
      }
    );
    function done() {
      loading = false;
      if (wanted && wanted.url !== target.url) {
        display();
      } else {
        wanted = null;
        prefetch();
        if (state.playing) schedulePlay();
      }
    }
  }

  function prefetch() {
    for (var d = 1; d <= PREFETCH; d++) {
      [state.index + d, state.index - d].forEach(function (i) {
        if (i >= 0 && i < slices.length) fetchFrame(urlFor(i)).catch(function () {});
      });
    }
  }

  function go(i) {
    var next = Math.max(0, Math.min(slices.length - 1, i));
    if (next === state.index && shownUrl === urlFor(next)) return;
    state.index = next;
    updateReadouts();
    display();
  }

  // --- Play ------------------------------------------------------------------------------------
  var playTimer = null;

  function schedulePlay() {
    window.clearTimeout(playTimer);
    var interval = Math.max(30, Math.min(1000, config.frameTimeMs || 100));
    playTimer = window.setTimeout(function () {
      if (!state.playing) return;
      go(state.index + 1 >= slices.length ? 0 : state.index + 1);
    }, interval);
  }

  function setPlaying(on) {
    state.playing = on && slices.length > 1;
    playButton.setAttribute("aria-pressed", state.playing ? "true" : "false");
    playButton.textContent = state.playing ? t.pause : t.play;
    // Announcing every frame while playing would drown a screen reader.
    readout.setAttribute("aria-live", state.playing ? "off" : "polite");
    if (state.playing) schedulePlay();
    else window.clearTimeout(playTimer);
  }

  // --- Zoom, pan, invert -----------------------------------------------------------------------
  function applyTransform() {
    img.style.transform = "translate(" + state.panX + "px, " + state.panY + "px) scale(" + state.zoom + ")";
    img.classList.toggle("inverted", state.invert);
    root.querySelector('[data-action="invert"]').setAttribute("aria-pressed", state.invert ? "true" : "false");
    stage.classList.toggle("zoomed", state.zoom !== 1);
  }

  function zoomBy(factor) {
    var z = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, state.zoom * factor));
    var applied = z / state.zoom;
    state.panX *= applied;
    state.panY *= applied;
    state.zoom = z;
    applyTransform();
  }

  function fit() {
    state.zoom = 1;
    state.panX = 0;
    state.panY = 0;
    applyTransform();
  }

  // --- Window ------------------------------------------------------------------------------------
  function baseWindow() {
    return state.window || config.window || config.fallbackWindow || { center: 128, width: 256 };
  }

  function setWindow(win, presetKey) {
    state.window = win ? { center: win.center, width: Math.max(1, win.width) } : null;
    if (preset) {
      preset.value = presetKey || (win ? "custom" : "file");
      var custom = preset.querySelector('option[value="custom"]');
      if (custom) custom.hidden = preset.value !== "custom";
    }
    updateReadouts();
    display();
  }

  function applyPreset(key) {
    if (key === "file") return setWindow(null, "file");
    var p = (config.presets || []).filter(function (x) { return x.key === key; })[0];
    if (p) setWindow({ center: p.center, width: p.width }, key);
  }

  function nudgeWindow(widthFactor, centerShift) {
    if (!config.adjustable) return;
    var w = baseWindow();
    setWindow({ center: w.center + centerShift * w.width, width: w.width * widthFactor });
  }

  // --- Input -------------------------------------------------------------------------------------
  stage.addEventListener("keydown", function (event) {
    var key = event.key;
    var handled = true;
    if (event.shiftKey && key.indexOf("Arrow") === 0) {
      var step = 24;
      if (key === "ArrowLeft") state.panX -= step;
      else if (key === "ArrowRight") state.panX += step;
      else if (key === "ArrowUp") state.panY -= step;
      else state.panY += step;
      applyTransform();
    } else if (key === "ArrowUp" || key === "ArrowLeft") go(state.index - 1);
    else if (key === "ArrowDown" || key === "ArrowRight") go(state.index + 1);
    else if (key === "PageUp") go(state.index - 10);
    else if (key === "PageDown") go(state.index + 10);
    else if (key === "Home") go(0);
    else if (key === "End") go(slices.length - 1);
    else if (key === " " || key === "Spacebar") setPlaying(!state.playing);
    else if (key === "+" || key === "=") zoomBy(1.25);
    else if (key === "-" || key === "_") zoomBy(0.8);
    else if (key === "0") fit();
    else if (key === "i" || key === "I") { state.invert = !state.invert; applyTransform(); }
    else if (key === "r" || key === "R") applyPreset("file");
    else if (/^[1-9]$/.test(key) && config.presets && config.presets[Number(key) - 1]) applyPreset(config.presets[Number(key) - 1].key);
    else if (key === "[") nudgeWindow(0.8, 0);
    else if (key === "]") nudgeWindow(1.25, 0);
    else if (key === ";") nudgeWindow(1, 0.05);
    else if (key === "'") nudgeWindow(1, -0.05);
    else handled = false;
    if (handled) event.preventDefault();
  });

  // Trackpads send many small deltas: step one image per ~50 px of scrolling.
  var wheelAccum = 0;
  stage.addEventListener(
    "wheel",
    function (event) {
      event.preventDefault();
      if (event.ctrlKey) {
        zoomBy(event.deltaY < 0 ? 1.1 : 1 / 1.1);
        return;
      }
      var delta = event.deltaMode === 1 ? event.deltaY * 40 : event.deltaY;
      wheelAccum += delta;
      if (Math.abs(wheelAccum) >= 50 || Math.abs(delta) >= 50) {
        go(state.index + (wheelAccum > 0 ? 1 : -1));
        wheelAccum = 0;
      }
    },
    { passive: false }
  );

  var pointers = new Map();
  var gesture = null;

  function pinchInfo() {
    var pts = Array.from(pointers.values());
    var dx = pts[0].x - pts[1].x;
    var dy = pts[0].y - pts[1].y;
    return { dist: Math.hypot(dx, dy), x: (pts[0].x + pts[1].x) / 2, y: (pts[0].y + pts[1].y) / 2 };
  }

  stage.addEventListener("pointerdown", function (event) {
    if (event.button !== undefined && event.button > 0) return;
    stage.focus({ preventScroll: true });
    try {
      stage.setPointerCapture(event.pointerId);
    } catch (e) {
      // A pointer that is already gone (or a synthetic one): the gesture still works without capture.
    }
    pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    if (pointers.size === 2) {
      var info = pinchInfo();
      gesture = { kind: "pinch", dist: info.dist, x: info.x, y: info.y, zoom: state.zoom, panX: state.panX, panY: state.panY };
    } else if (pointers.size === 1) {
      gesture = {
        kind: state.drag,
        x: event.clientX,
        y: event.clientY,
        panX: state.panX,
        panY: state.panY,
        index: state.index,
        win: baseWindow(),
        touch: event.pointerType === "touch",
      };
    }
  });

  stage.addEventListener("pointermove", function (event) {
    if (!pointers.has(event.pointerId) || !gesture) return;
    pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    if (gesture.kind === "pinch" && pointers.size === 2) {
      var info = pinchInfo();
      state.zoom = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, gesture.zoom * (info.dist / (gesture.dist || 1))));
      state.panX = gesture.panX + (info.x - gesture.x);
      state.panY = gesture.panY + (info.y - gesture.y);
      applyTransform();
      return;
    }
    var dx = event.clientX - gesture.x;
    var dy = event.clientY - gesture.y;
    if (gesture.kind === "pan") {
      state.panX = gesture.panX + dx;
      state.panY = gesture.panY + dy;
      applyTransform();
    } else if (gesture.kind === "scroll") {
      var perImage = gesture.touch ? 14 : 8; // pixels of movement per image
      go(gesture.index + Math.round(dy / perImage));
    } else if (gesture.kind === "window" && config.adjustable) {
      // Right/left: wider/narrower; down/up: darker/brighter. Proportional to the window, so
      // the same gesture works for 8-bit photos and 16-bit CT alike.
      var w = gesture.win;
      var width = Math.max(1, w.width * Math.exp(dx / 200));
      var center = w.center - (dy / 200) * w.width;
      state.window = { center: center, width: width };
      if (preset) {
        preset.value = "custom";
        var custom = preset.querySelector('option[value="custom"]');
        if (custom) custom.hidden = false;
      }
      updateReadouts();
      display();
    }
  });

  function endPointer(event) {
    pointers.delete(event.pointerId);
    if (pointers.size === 0) gesture = null;
    else if (pointers.size === 1 && gesture && gesture.kind === "pinch") gesture = null;
  }
  stage.addEventListener("pointerup", endPointer);
  stage.addEventListener("pointercancel", endPointer);
  stage.addEventListener("dblclick", fit);

  slider.addEventListener("input", function () {
    go(Number(slider.value) - 1);
  });

  toolbar.addEventListener("click", function (event) {
    var button = event.target.closest("[data-action]");
    if (!button) return;
    var action = button.dataset.action;
    if (action === "prev") go(state.index - 1);
    else if (action === "next") go(state.index + 1);
    else if (action === "play") setPlaying(!state.playing);
    else if (action === "zoom-in") zoomBy(1.25);
    else if (action === "zoom-out") zoomBy(0.8);
    else if (action === "fit") fit();
    else if (action === "invert") { state.invert = !state.invert; applyTransform(); }
  });

  if (preset) preset.addEventListener("change", function () { if (preset.value !== "custom") applyPreset(preset.value); });

  var radios = root.querySelectorAll('input[name="drag"]');
  Array.prototype.forEach.call(radios, function (radio) {
    radio.addEventListener("change", function () {
      if (radio.checked) {
        state.drag = radio.value;
        stage.dataset.drag = radio.value;
      }
    });
  });

  // --- Fit the viewport ------------------------------------------------------------------------
  // The stage takes the height left under it once the slider and the readout have their room,
  // so the image, the slider and "Image n of N" are all on screen without scrolling.
  var MIN_STAGE = 200; // px: below this a phone in landscape scrolls rather than shrink further

  function fitStage() {
    var top = stage.getBoundingClientRect().top + window.scrollY;
    var gap = parseFloat(window.getComputedStyle(column).rowGap) || 0;
    var below = (scrub.hidden ? 0 : scrub.offsetHeight + gap) + readouts.offsetHeight + gap + 8;
    stage.style.height = Math.max(MIN_STAGE, Math.floor(window.innerHeight - top - below)) + "px";
    if (strip) {
      var beside = window.getComputedStyle(strip).getPropertyValue("--strip-beside").trim() === "1";
      strip.style.maxHeight = beside ? column.offsetHeight + "px" : "";
    }
  }

  var fitPending = false;
  window.addEventListener("resize", function () {
    if (fitPending) return;
    fitPending = true;
    window.requestAnimationFrame(function () {
      fitPending = false;
      fitStage();
    });
  });

  // --- Start (and again after a series switch) --------------------------------------------------
  var coarse = window.matchMedia && window.matchMedia("(pointer: coarse)").matches;
  var windowTools = document.getElementById("viewer-window-tools");
  var windowRadio = root.querySelector('input[name="drag"][value="window"]');

  function buildPresets() {
    if (!preset) return;
    Array.prototype.forEach.call(preset.querySelectorAll("option"), function (option) {
      if (option.value !== "file" && option.value !== "custom") option.remove();
    });
    var custom = preset.querySelector('option[value="custom"]');
    (config.presets || []).forEach(function (p) {
      var option = document.createElement("option");
      option.value = p.key;
      option.textContent = p.name + " (" + p.center + " / " + p.width + ")";
      preset.insertBefore(option, custom);
    });
    preset.value = "file";
    if (custom) custom.hidden = true;
  }

  function applyConfig() {
    slices = config.slices || [];
    setPlaying(false);
    state.index = 0;
    state.window = null;
    state.zoom = 1;
    state.panX = 0;
    state.panY = 0;
    state.invert = false;
    buildPresets();
    state.drag = coarse || !config.adjustable ? "scroll" : "window";
    if (windowTools) windowTools.hidden = !config.adjustable;
    if (windowRadio) windowRadio.closest("label").hidden = !config.adjustable;
    windowReadout.hidden = !config.adjustable;
    Array.prototype.forEach.call(radios, function (radio) { radio.checked = radio.value === state.drag; });
    stage.dataset.drag = state.drag;
    Array.prototype.forEach.call(root.querySelectorAll('[data-action="prev"], [data-action="next"], [data-action="play"]'), function (el) {
      el.hidden = slices.length < 2;
    });
    scrub.hidden = slices.length < 2;
    slider.max = String(slices.length);
    toolbar.hidden = false;
    root.classList.add("viewer-ready");
    fitStage();
    updateReadouts();
    applyTransform();
    display();
  }

  // --- Series strip: switch series in place -----------------------------------------------------
  var titleSuffix = document.title.slice(document.title.lastIndexOf(" · "));

  function forgetFrames() {
    cache.forEach(function (blobUrl) { URL.revokeObjectURL(blobUrl); });
    cache.clear();
    shownUrl = null;
  }

  function switchSeries(link, push) {
    fetch(link.dataset.json, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        forgetFrames();
        config = data.config;
        // Rendered and escaped by the server (Django templates); no script in them (CSP).
        title.innerHTML = data.title;
        notice.innerHTML = data.notice;
        document.title = data.headTitle + titleSuffix;
        Array.prototype.forEach.call(strip.querySelectorAll(".strip-item"), function (item) {
          if (item.dataset.series === String(data.series)) item.setAttribute("aria-current", "page");
          else item.removeAttribute("aria-current");
        });
        if (push) window.history.pushState({ series: data.series }, "", data.url);
        applyConfig();
        stage.focus({ preventScroll: true });
      })
      .catch(function () {
        window.location.href = link.href; // whatever went wrong, the page itself still works
      });
  }

  if (strip) {
    strip.addEventListener("click", function (event) {
      var link = event.target.closest(".strip-item");
      if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
      if (link.getAttribute("aria-current") === "page") {
        stage.focus({ preventScroll: true });
        return;
      }
      switchSeries(link, true);
    });
    window.addEventListener("popstate", function () {
      var link = Array.prototype.filter.call(strip.querySelectorAll(".strip-item"), function (item) {
        return item.pathname === window.location.pathname;
      })[0];
      if (link) switchSeries(link, false);
      else window.location.reload();
    });
  }

  applyConfig();
  // The image has the keyboard from the start: the arrow keys work without a click first.
  stage.focus({ preventScroll: true });
})();
