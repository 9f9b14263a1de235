/* Player page: start a desktop, follow its creation, then show the
 * countdown with Open in a new tab / Extend / Destroy, and the desktop
 * itself (viewer.js). Talks to {prefix}/api/... */
(function () {
  'use strict';
  var RD = window.RD;

  var STAGES = ['queued', 'scheduling', 'starting', 'waiting_for_desktop', 'ready'];
  var LABELS = {
    queued: 'Waiting in queue',
    scheduling: 'Choosing a host',
    starting: 'Starting container',
    waiting_for_desktop: 'Waiting for the desktop',
    ready: 'Ready'
  };
  // How far the bar is when a stage begins.
  var PERCENT = { queued: 8, scheduling: 25, starting: 50, waiting_for_desktop: 75, ready: 100 };
  var TERMINAL = { failed: true, destroyed: true, expired: true };

  var CREATION_POLL_MS = 500;
  var STATUS_POLL_MS = 5000;
  var WARN_SECONDS = 300;
  var DANGER_SECONDS = 60;

  var $ = function (id) { return document.getElementById(id); };
  var views = { loading: $('view-loading'), idle: $('view-idle'), creating: $('view-creating'), ready: $('view-ready') };
  var startBtn = $('start-button');
  var connectBtn = $('connect-button');
  var extendBtn = $('extend-button');
  var destroyBtn = $('destroy-button');
  var countdownEl = $('countdown');
  var hintEl = $('countdown-hint');

  var current = 'loading';
  var pollTimer = null;
  var generation = 0;         // bumped on every view change; stale polls drop their answers
  var session = null;         // last session seen while ready
  var connectURL = '';        // kept here only, never logged or put in the DOM
  var deadline = null;        // local ms when the session expires
  var expiredPollSent = false;
  var lastBand = '';          // '', 'warn' or 'danger' (for announcements)
  var creationStart = null;   // local ms when creation started (for "Elapsed")
  var viewerRetried = false;

  // The desktop on this page; a dropped connection makes the page ask at
  // once whether the desktop still exists.
  var viewer = RD.viewer(function () { if (current === 'ready') schedule(pollStatus, 0); });

  function show(name) {
    if (name !== 'ready') viewer.hide();
    current = name;
    generation++;
    clearTimeout(pollTimer);
    pollTimer = null;
    Object.keys(views).forEach(function (k) { views[k].hidden = k !== name; });
  }

  function schedule(fn, ms) {
    var gen = generation;
    clearTimeout(pollTimer);
    pollTimer = setTimeout(function () { if (gen === generation) fn(gen); }, ms);
  }

  // handlePollError decides whether a poll keeps going after err.
  function handlePollError(err, retry, gen) {
    if (err.isAuth && err.isAuth()) {
      RD.showAlert(err, { key: 'poll' });
      return; // stop: the user has to log in again
    }
    RD.showAlert(err, { key: 'poll', kind: 'warning', title: err.status === 0 ? 'Connection problem.' : '' });
    schedule(retry, err.isTransient && err.isTransient() ? 2000 : 5000);
  }

  // ---------- routing ----------

  // route shows the view for a /api/status answer.
  function route(d) {
    var s = d && d.session;
    if (d && d.active && s) {
      if (s.state === 'ready') return enterReady(s);
      if (STAGES.indexOf(s.state) >= 0) return enterCreating(s);
      if (!TERMINAL[s.state]) return enterReady(s);
    }
    enterIdle(s && TERMINAL[s.state] ? s : null);
  }

  async function load() {
    var gen = generation;
    try {
      var d = await RD.api('GET', '/api/status');
      if (gen !== generation) return;
      RD.clearAlert('poll');
      route(d);
    } catch (err) {
      if (gen !== generation) return;
      if (current === 'loading') {
        show('idle');
        startBtn.disabled = false;
      }
      handlePollError(err, load, gen);
    }
  }

  // ---------- idle / ended ----------

  var ENDED = {
    expired: ['Your desktop expired.', 'Its time ran out.'],
    destroyed: ['Your desktop was stopped.', ''],
    failed: ['Your desktop could not be started.', ''],
    user: ['You destroyed your desktop.', '']
  };

  function enterIdle(ended) {
    show('idle');
    connectURL = '';
    session = null;
    deadline = null;
    var notice = $('ended-notice');
    if (ended) {
      var key = ended.state in ENDED ? ended.state : 'destroyed';
      var text = ENDED[key];
      var detail = ended.error ? 'Reason: ' + ended.error : text[1];
      notice.className = 'alert ' + (ended.state === 'failed' ? 'alert-danger' : 'alert-info');
      notice.setAttribute('data-state', ended.state);
      $('ended-title').textContent = text[0];
      $('ended-detail').textContent = detail;
      notice.hidden = false;
      startBtn.textContent = 'Start a new desktop';
    } else {
      notice.hidden = true;
      startBtn.textContent = 'Start desktop';
    }
    startBtn.disabled = false;
  }

  startBtn.addEventListener('click', function () {
    RD.busy(startBtn, async function () {
      RD.clearAlert();
      try {
        var d = await RD.api('POST', '/api/create', {});
        var s = d.session || { state: 'queued', stages: [] };
        if (s.state === 'ready') enterReady(s);
        else if (TERMINAL[s.state]) enterIdle(s);
        else enterCreating(s);
        RD.announce('Starting your desktop');
      } catch (err) {
        if (err.status === 429) return rateLimited(err, startBtn);
        RD.showAlert(err, { title: 'Could not start a desktop.' });
        // A session may already exist (409) or have been started elsewhere.
        if (err.status === 409) load();
      }
    });
  });

  // rateLimited explains a 429 (too many creates/destroys) and keeps the
  // button disabled until the server's Retry-After has passed.
  function rateLimited(err, button) {
    RD.showAlert(err, { kind: 'warning', key: 'rate', title: 'Slow down.' });
    var wait = Math.max(1, err.retryAfter || 5) * 1000;
    setTimeout(function () {
      button.disabled = true;
      setTimeout(function () { button.disabled = false; RD.clearAlert('rate'); }, wait);
    }, 0);
  }

  // ---------- creating ----------

  function enterCreating(s) {
    show('creating');
    var first = s && s.stages && s.stages[0] && Date.parse(s.stages[0].at);
    creationStart = first && !isNaN(first) ? first - (RD.serverNow() - Date.now()) : Date.now();
    renderStage(s.state || 'queued', s.queue_position || 0, s.stages || []);
    schedule(pollCreation, CREATION_POLL_MS);
  }

  function stageLabel(state, queuePos) {
    if (state === 'queued') return queuePos > 0 ? 'Waiting in queue (position ' + queuePos + ')' : 'Waiting in queue';
    return LABELS[state] || state;
  }

  function renderStage(state, queuePos, stages) {
    var idx = STAGES.indexOf(state);
    if (idx < 0) idx = 0;
    var label = stageLabel(state, queuePos);
    var labelEl = $('stage-label');
    if (labelEl.textContent !== label) labelEl.textContent = label;
    var bar = $('progress');
    bar.setAttribute('data-stage', state);
    bar.setAttribute('aria-valuenow', String(PERCENT[STAGES[idx]]));
    bar.setAttribute('aria-valuetext', label);
    $('progress-fill').style.width = PERCENT[STAGES[idx]] + '%';
    $('stage-step').textContent = 'Step ' + (idx + 1) + ' of ' + STAGES.length;

    var at = {};
    (stages || []).forEach(function (st) { if (st && st.state) at[st.state] = Date.parse(st.at); });
    var t0 = at.queued || at[STAGES[0]];
    if (!t0) {
      for (var k = 0; k < STAGES.length; k++) if (at[STAGES[k]]) { t0 = at[STAGES[k]]; break; }
    }
    var items = $('steps').children;
    for (var i = 0; i < items.length; i++) {
      var li = items[i];
      var cls = i < idx ? 'done' : i === idx ? (state === 'ready' ? 'done' : 'current') : 'pending';
      li.className = cls;
      if (i === idx && state !== 'ready') li.setAttribute('aria-current', 'step');
      else li.removeAttribute('aria-current');
      var name = li.querySelector('.step-name');
      var want = i === 0 ? stageLabel('queued', i === idx ? queuePos : 0) : LABELS[STAGES[i]];
      if (name.textContent !== want) name.textContent = want;
      // Time each finished stage took: from its start to the next one's.
      var timeEl = li.querySelector('.step-time');
      var start = at[STAGES[i]], next = at[STAGES[i + 1]];
      timeEl.textContent = cls === 'done' && start && next && next >= start ? ((next - start) / 1000).toFixed(1) + ' s' : '';
    }
    tickElapsed();
  }

  function tickElapsed() {
    if (current !== 'creating' || !creationStart) return;
    $('elapsed').textContent = RD.clock((Date.now() - creationStart) / 1000).replace(/^0(\d:)/, '$1');
  }

  async function pollCreation(gen) {
    var d;
    try {
      d = await RD.api('GET', '/api/creation-status');
    } catch (err) {
      if (gen === generation) handlePollError(err, pollCreation, gen);
      return;
    }
    if (gen !== generation) return;
    RD.clearAlert('poll');
    var state = d.state || '';
    if (state === 'ready') {
      renderStage('ready', 0, d.stages);
      // The first status poll after ready starts the session timer.
      return pollStatus(gen);
    }
    if (TERMINAL[state]) return enterIdle({ state: state, error: d.error });
    if (!d.active || STAGES.indexOf(state) < 0) return load();
    renderStage(state, d.queue_position || 0, d.stages);
    schedule(pollCreation, CREATION_POLL_MS);
  }

  // ---------- ready ----------

  function enterReady(s) {
    show('ready');
    applySession(s);
    // Without a deadline the timer has not started yet: the status poll starts it.
    schedule(pollStatus, s.expires_at ? STATUS_POLL_MS : 0);
  }

  async function pollStatus(gen) {
    var d;
    try {
      d = await RD.api('GET', '/api/status');
    } catch (err) {
      if (gen === generation) handlePollError(err, pollStatus, gen);
      return;
    }
    if (gen !== generation) return;
    RD.clearAlert('poll');
    var s = d.session;
    if (!d.active || !s || TERMINAL[s.state]) {
      RD.announce('Your desktop has stopped');
      return enterIdle(s && s.state ? s : { state: 'destroyed' });
    }
    if (s.state !== 'ready' && STAGES.indexOf(s.state) >= 0) return enterCreating(s);
    if (current !== 'ready') {
      show('ready');
      RD.announce('Your desktop is ready');
    }
    applySession(s);
    schedule(pollStatus, STATUS_POLL_MS);
  }

  function applySession(s) {
    session = s;
    if (s.connect_url) connectURL = s.connect_url;
    connectBtn.disabled = !connectURL;
    if (connectURL) viewer.show(connectURL, s.id || '');
    // No client at load (no host answered yet, say, after a restart): ask
    // once more now that there is a desktop.
    if (connectURL && !viewerRetried && document.documentElement.getAttribute('data-viewer') === 'unavailable') {
      viewerRetried = true;
      prefetchViewer();
    }
    deadline = RD.deadlineOf(s);
    expiredPollSent = false;
    updateExtendButton();
    $('info-started').textContent = RD.timeOfDay(s.ready_at || s.created_at) || '—';
    $('info-extensions').textContent = (s.extensions_used || 0) + ' of ' + (s.max_extensions || 0);
    $('info-id').textContent = s.id ? String(s.id).slice(0, 12) : '—';
    tickCountdown();
  }

  function updateExtendButton() {
    var s = session;
    if (!s) return;
    var left = typeof s.extensions_left === 'number' ? s.extensions_left
      : Math.max(0, (s.max_extensions || 0) - (s.extensions_used || 0));
    if (left > 0) {
      extendBtn.textContent = 'Extend (+' + RD.minutes(s.extension_seconds || 1200) + ', ' + left + ' left)';
      extendBtn.disabled = false;
    } else {
      extendBtn.textContent = 'No extensions left';
      extendBtn.disabled = true;
    }
  }

  function tickCountdown() {
    if (current !== 'ready') return;
    if (deadline === null) {
      countdownEl.textContent = '--:--';
      countdownEl.className = 'countdown';
      hintEl.textContent = 'Starting the timer…';
      hintEl.className = 'timer-hint';
      return;
    }
    var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    countdownEl.textContent = RD.clock(left);
    var band = left < DANGER_SECONDS ? 'danger' : left < WARN_SECONDS ? 'warn' : '';
    countdownEl.className = 'countdown' + (band ? ' ' + band : '');
    countdownEl.setAttribute('data-band', band || 'ok');
    hintEl.className = 'timer-hint' + (band ? ' ' + band : '');
    var canExtend = !extendBtn.disabled;
    if (left === 0) hintEl.textContent = 'Time is up; the desktop is being stopped.';
    else if (band) hintEl.textContent = canExtend ? 'Running out soon. Extend to keep working.' : 'Running out soon. Save your work.';
    else hintEl.textContent = '';
    if (band && band !== lastBand) {
      RD.announce(band === 'danger' ? 'Less than one minute left' : 'Less than five minutes left');
    }
    lastBand = band;
    if (left === 0 && !expiredPollSent) {
      expiredPollSent = true;
      schedule(pollStatus, 1500);
    }
  }

  connectBtn.addEventListener('click', function () {
    if (!connectURL || !RD.openSession(connectURL)) {
      RD.showAlert('The desktop address is not available yet; try again in a moment.', { kind: 'warning' });
      return;
    }
    viewer.away();
  });

  extendBtn.addEventListener('click', async function () {
    await RD.busy(extendBtn, async function () {
      try {
        var d = await RD.api('POST', '/api/extend', {});
        if (d.session) applySession(d.session);
        RD.toast('Extended by ' + RD.minutes((d.session || session || {}).extension_seconds || 1200));
      } catch (err) {
        RD.showAlert(err, { title: 'Could not extend.' });
      }
    });
    updateExtendButton();
  });

  destroyBtn.addEventListener('click', function () {
    if (!window.confirm('Destroy your desktop? Anything saved only inside it is lost.')) return;
    RD.busy(destroyBtn, async function () {
      try {
        await RD.api('POST', '/api/destroy', {});
        enterIdle({ state: 'user' });
        RD.announce('Your desktop was destroyed');
      } catch (err) {
        if (err.status === 429) return rateLimited(err, destroyBtn);
        RD.showAlert(err, { title: 'Could not destroy the desktop.' });
      }
    });
  });

  // Background tabs get their timers throttled; catch up on return.
  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState !== 'visible') return;
    if (current === 'ready') schedule(pollStatus, 0);
    else if (current === 'creating') schedule(pollCreation, 0);
  });

  // prefetchViewer loads noVNC's files into the browser's cache when the
  // page loads (they are named by their content and cached for good, so
  // this costs the network once per browser), then noVNC's client for the
  // desktop on this page, so that a ready desktop only waits for its
  // websocket, and a new tab opens it without loading them. It never shows
  // an error: without it, the desktop opens in a new tab, which loads them
  // itself. html[data-viewer-prefetch] says how the fetch went (tests read
  // it).
  async function prefetchViewer() {
    var root = document.documentElement;
    root.setAttribute('data-viewer-prefetch', 'running');
    try {
      var d = await RD.api('GET', '/api/viewer');
      var files = (d.files || []).slice();
      var worker = async function () {
        for (var f = files.shift(); f; f = files.shift()) {
          var resp = await fetch(d.base + encodeURI(f), { credentials: 'same-origin' });
          await resp.arrayBuffer();
          if (!resp.ok) throw new Error('prefetch ' + f + ': ' + resp.status);
        }
      };
      await Promise.all([worker(), worker(), worker(), worker()]);
      root.setAttribute('data-viewer-prefetch', 'done');
    } catch (err) {
      root.setAttribute('data-viewer-prefetch', 'failed');
    }
    if (d && d.base) await viewer.load(d.base);
    else root.setAttribute('data-viewer', 'unavailable');
  }

  setInterval(function () { tickCountdown(); tickElapsed(); }, 1000);
  load();
  prefetchViewer();
})();
