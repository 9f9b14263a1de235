/* Admin dashboard: live sessions, hosts and the event feed.
 * Talks to {prefix}/admin/api/... and {prefix}/admin/api/events/stream. */
(function () {
  'use strict';
  var RD = window.RD;
  var el = RD.el;

  var SESSIONS_MS = 5000;
  var HOSTS_MS = 10000;
  var MAX_EVENTS = 200;
  var EVENT_TYPES = [
    'session_queued', 'session_created', 'session_ready', 'session_timer_started', 'session_extended', 'session_expired',
    'session_destroyed', 'session_adopted', 'session_viewed', 'creation_failed',
    'host_unhealthy', 'host_recovered', 'host_check', 'host_drained', 'host_undrained', 'orphan_removed'
  ];
  // Events after which a table is stale.
  var REFRESH_SESSIONS = /^(session_|creation_failed)/;
  var REFRESH_HOSTS = /^(host_|warm_|orphan_removed|creation_failed|session_(created|ready|destroyed|expired|adopted))/;
  var TERMINAL = { failed: true, destroyed: true, expired: true };
  var STATE_BADGE = {
    ready: 'badge-success', queued: 'badge-secondary', scheduling: 'badge-info', starting: 'badge-info',
    waiting_for_desktop: 'badge-info', failed: 'badge-danger', destroyed: 'badge-secondary', expired: 'badge-secondary'
  };
  var HEALTH_BADGE = { healthy: 'badge-success', unhealthy: 'badge-danger', unknown: 'badge-secondary' };

  var $ = function (id) { return document.getElementById(id); };

  // Finds a child by data-testid without building selectors from data.
  function part(row, testid) {
    var nodes = row.querySelectorAll('[data-testid]');
    for (var i = 0; i < nodes.length; i++) if (nodes[i].getAttribute('data-testid') === testid) return nodes[i];
    return null;
  }

  function setText(node, text) {
    text = text === null || text === undefined ? '' : String(text);
    if (node.textContent !== text) node.textContent = text;
  }

  function setBadge(node, cls, text) {
    var want = 'badge ' + cls;
    if (node.className !== want) node.className = want;
    setText(node, text);
  }

  // keyedRows updates tbody so it holds one row per item, in order, reusing
  // the rows that exist (buttons keep their focus across refreshes).
  function keyedRows(tbody, rows, items, keyOf, make, update, emptyText, cols) {
    var seen = {};
    var order = [];
    items.forEach(function (item) {
      var key = keyOf(item);
      seen[key] = true;
      var row = rows.get(key);
      if (!row) { row = make(item, key); rows.set(key, row); }
      update(row, item);
      order.push(row);
    });
    rows.forEach(function (row, key) {
      if (!seen[key]) { row.remove(); rows.delete(key); }
    });
    var empty = tbody.querySelector('tr.empty');
    if (order.length === 0) {
      if (!empty) tbody.appendChild(el('tr', { className: 'empty' }, el('td', { colspan: cols, className: 'empty-row', text: emptyText })));
      return;
    }
    if (empty) empty.remove();
    var inOrder = order.every(function (row, i) { return tbody.children[i] === row; });
    if (!inOrder) order.forEach(function (row) { tbody.appendChild(row); });
  }

  // ---------- polling ----------

  // poller runs fetchFn now and then every ms, never two at once.
  function poller(fetchFn, ms) {
    var timer = null, running = false, again = false;
    async function run() {
      clearTimeout(timer);
      if (running) { again = true; return; }
      running = true;
      try { await fetchFn(); } finally {
        running = false;
        timer = setTimeout(run, again ? 0 : ms);
        again = false;
      }
    }
    var debounce = null;
    return {
      now: run,
      soon: function () { clearTimeout(debounce); debounce = setTimeout(run, 300); }
    };
  }

  function updatedLabel(node, info) {
    if (info.failed) {
      setText(node, 'Update failed');
      node.classList.add('text-danger');
      return;
    }
    node.classList.remove('text-danger');
    setText(node, info.at ? 'Updated ' + RD.age((Date.now() - info.at) / 1000) + ' ago' : '');
  }

  // ---------- sessions ----------

  var sessionRows = new Map();
  var sessionsInfo = { at: 0, failed: false };
  var sessionsByUser = new Map();

  function makeSessionRow(s, key) {
    var row = el('tr', { 'data-testid': 'session-row-' + key, 'data-user-id': key });
    var open = el('button', { type: 'button', className: 'btn btn-sm btn-outline-primary', 'data-testid': 'open-button' }, 'Open');
    var extend = el('button', { type: 'button', className: 'btn btn-sm btn-outline-secondary', 'data-testid': 'admin-extend-button' }, 'Extend');
    var kill = el('button', { type: 'button', className: 'btn btn-sm btn-outline-danger', 'data-testid': 'kill-button' }, 'Kill');
    open.addEventListener('click', function () { openSession(key); });
    extend.addEventListener('click', function () { extendSession(key, extend); });
    kill.addEventListener('click', function () { killSession(key, kill); });
    row.append(
      el('td', null, el('strong', { 'data-testid': 'session-user' }), el('span', { className: 'cell-sub', 'data-testid': 'session-user-id' })),
      el('td', { className: 'mono', 'data-testid': 'session-host' }),
      el('td', null, el('span', { 'data-testid': 'session-state' }), el('span', { className: 'cell-reason', 'data-testid': 'session-error' })),
      el('td', { className: 'num', 'data-testid': 'session-age' }),
      el('td', { className: 'num countdown-cell', 'data-testid': 'session-countdown' }),
      el('td', { className: 'num', 'data-testid': 'session-extensions' }),
      el('td', { className: 'cell-actions' }, open, extend, kill)
    );
    return row;
  }

  function updateSessionRow(row, s) {
    var name = s.user_name || 'user ' + s.user_id;
    setText(part(row, 'session-user'), name);
    setText(part(row, 'session-user-id'), '#' + s.user_id);
    setText(part(row, 'session-host'), s.host || '—');
    var label = s.state === 'queued' && s.queue_position ? 'queued (#' + s.queue_position + ')' : (s.state || 'unknown').replace(/_/g, ' ');
    setBadge(part(row, 'session-state'), STATE_BADGE[s.state] || 'badge-secondary', label);
    setText(part(row, 'session-error'), s.error || '');
    var ext = part(row, 'session-extensions');
    setText(ext, (s.extensions_used || 0) + ' / ' + (s.max_extensions || 0));
    var created = Date.parse(s.created_at);
    row._created = isNaN(created) ? null : created;
    row._deadline = RD.deadlineOf(s);
    var cd = part(row, 'session-countdown');
    cd.title = s.expires_at ? 'Expires ' + RD.fullTime(s.expires_at) : 'Timer not started';
    part(row, 'session-age').title = s.created_at ? 'Created ' + RD.fullTime(s.created_at) : '';
    part(row, 'open-button').disabled = !s.connect_url;
    part(row, 'open-button').setAttribute('aria-label', 'Open the desktop of ' + name);
    var left = typeof s.extensions_left === 'number' ? s.extensions_left : (s.max_extensions || 0) - (s.extensions_used || 0);
    var extBtn = part(row, 'admin-extend-button');
    if (!extBtn.classList.contains('busy')) extBtn.disabled = !s.expires_at || TERMINAL[s.state];
    extBtn.setAttribute('aria-label', 'Extend the session of ' + name + (left > 0 ? '' : ' (player has no extensions left)'));
    part(row, 'kill-button').setAttribute('aria-label', 'Kill the session of ' + name);
    tickSessionRow(row);
  }

  function tickSessionRow(row) {
    var now = RD.serverNow();
    setText(part(row, 'session-age'), row._created ? RD.age((now - row._created) / 1000) : '—');
    var cd = part(row, 'session-countdown');
    if (row._deadline === null) {
      setText(cd, '—');
      cd.className = 'num countdown-cell';
      return;
    }
    var left = Math.max(0, Math.round((row._deadline - Date.now()) / 1000));
    setText(cd, RD.clock(left));
    cd.className = 'num countdown-cell' + (left < 60 ? ' danger' : left < 300 ? ' warn' : '');
  }

  // The figures at the top come from the server's summary, the same
  // numbers the remote_desktop_* metrics export.
  function showSummary(f) {
    if (!f) return;
    setText($('stat-active'), f.running);
    setText($('stat-starting'), f.starting);
    setText($('stat-hosts'), f.hosts_healthy + ' / ' + f.hosts);
    $('stat-hosts').classList.toggle('text-danger', f.hosts > 0 && f.hosts_healthy < f.hosts);
    setText($('stat-capacity'), f.active + ' / ' + (f.unlimited ? '∞' : f.capacity));
  }

  async function fetchSessions() {
    try {
      var d = await RD.api('GET', '/admin/api/containers');
      var list = (d.sessions || []).slice().sort(function (a, b) {
        return String(a.created_at).localeCompare(String(b.created_at)) || String(a.user_id).localeCompare(String(b.user_id));
      });
      sessionsByUser = new Map(list.map(function (s) { return [String(s.user_id), s]; }));
      keyedRows($('sessions-body'), sessionRows, list, function (s) { return String(s.user_id); },
        makeSessionRow, updateSessionRow, 'No sessions right now.', 7);
      showSummary(d.summary);
      sessionsInfo = { at: Date.now(), failed: false };
      RD.clearAlert('sessions');
    } catch (err) {
      sessionsInfo.failed = true;
      RD.showAlert(err, { key: 'sessions', kind: err.isTransient && err.isTransient() ? 'warning' : 'danger', title: 'Sessions:' });
    }
    updatedLabel($('sessions-updated'), sessionsInfo);
  }

  function describe(key) {
    var s = sessionsByUser.get(key);
    return (s && s.user_name ? s.user_name + ' (#' + key + ')' : 'user #' + key);
  }

  function openSession(key) {
    var s = sessionsByUser.get(key);
    if (!s || !s.connect_url || !RD.openSession(s.connect_url)) {
      RD.showAlert('That desktop has no address yet.', { kind: 'warning' });
    }
  }

  function extendSession(key, button) {
    RD.busy(button, async function () {
      try {
        await RD.api('POST', '/admin/api/extend', { user_id: key });
        RD.toast('Extended the session of ' + describe(key));
      } catch (err) {
        RD.showAlert(err, { title: 'Could not extend ' + describe(key) + '.' });
      }
    }).then(sessions.now);
  }

  function killSession(key, button) {
    if (!window.confirm('Kill the desktop of ' + describe(key) + '? Its container is removed and unsaved work is lost.')) return;
    RD.busy(button, async function () {
      try {
        await RD.api('POST', '/admin/api/kill', { user_id: key });
        RD.toast('Killed the session of ' + describe(key));
      } catch (err) {
        RD.showAlert(err, { title: 'Could not kill ' + describe(key) + '.' });
      }
    }).then(function () { sessions.now(); hosts.soon(); });
  }

  // ---------- hosts ----------

  var hostRows = new Map();
  var hostsInfo = { at: 0, failed: false };

  function makeHostRow(h, key) {
    var row = el('tr', { 'data-testid': 'host-row-' + key, 'data-host': key });
    var drain = el('button', { type: 'button', className: 'btn btn-sm btn-outline-secondary', 'data-testid': 'drain-button' });
    var check = el('button', { type: 'button', className: 'btn btn-sm btn-outline-primary', 'data-testid': 'recheck-button' }, 'Re-check');
    drain.addEventListener('click', function () { toggleDrain(key, drain); });
    check.addEventListener('click', function () { recheck(key, check); });
    row.append(
      el('td', null, el('span', { className: 'mono', 'data-testid': 'host-name' }), el('span', { className: 'cell-sub', 'data-testid': 'host-pub' })),
      el('td', null, el('span', { 'data-testid': 'host-health' }), el('span', { className: 'cell-sub', 'data-testid': 'host-since' }), el('span', { className: 'cell-reason', 'data-testid': 'host-reason' })),
      el('td', null, el('span', { className: 'checks', 'data-testid': 'host-checks' })),
      el('td', { className: 'num', 'data-testid': 'host-sessions' }),
      el('td', null, el('span', { 'data-testid': 'host-drained' }), el('span', { className: 'cell-sub', 'data-testid': 'host-warm' })),
      el('td', { className: 'num', 'data-testid': 'host-last-check' }),
      el('td', { className: 'cell-actions' }, drain, check)
    );
    return row;
  }

  function updateHostRow(row, h) {
    row._h = h;
    setText(part(row, 'host-name'), h.name);
    setText(part(row, 'host-pub'), h.pub_hostname && h.pub_hostname !== h.name ? h.pub_hostname : '');
    var health = h.health || 'unknown';
    var badge = part(row, 'host-health');
    setBadge(badge, HEALTH_BADGE[health] || 'badge-secondary', health);
    badge.title = h.reason || '';
    badge.setAttribute('data-health', health);
    setText(part(row, 'host-reason'), health !== 'healthy' ? h.reason || '' : '');
    row.setAttribute('data-health', health);

    var checks = part(row, 'host-checks');
    var sig = JSON.stringify(h.checks || []);
    if (checks._sig !== sig) {
      checks._sig = sig;
      checks.textContent = '';
      (h.checks || []).forEach(function (c) {
        checks.appendChild(el('span', {
          className: 'check ' + (c.ok ? 'ok' : 'fail'),
          title: c.detail || '',
          'data-check': c.name
        }, c.name + (c.ok ? ' ✓' : ' ✗'), el('span', { className: 'visually-hidden', text: c.ok ? ' passed' : ' failed' + (c.detail ? ': ' + c.detail : '') })));
      });
      if (!h.checks || !h.checks.length) checks.appendChild(el('span', { className: 'text-muted small', text: 'not checked' }));
    }
    setText(part(row, 'host-sessions'), (h.active || 0) + ' / ' + (h.max_sessions > 0 ? h.max_sessions : '∞'));
    var dr = part(row, 'host-drained');
    if (h.drained) setBadge(dr, 'badge-warning', 'drained');
    else setBadge(dr, 'badge-primary', 'accepting');
    // The warm pool (warm: N): desktops ready to claim, refills in flight.
    var w = h._warm;
    setText(part(row, 'host-warm'), w && (w.target || w.ready || w.starting || w.refills) ? 'warm ' + w.ready + ' / ' + w.target + ' ready' +
      (w.starting ? ', ' + w.starting + ' starting' : '') + ', ' + w.refills + ' refilled' : '');
    var drain = part(row, 'drain-button');
    setText(drain, h.drained ? 'Undrain' : 'Drain');
    drain.setAttribute('aria-label', (h.drained ? 'Undrain ' : 'Drain ') + h.name);
    part(row, 'recheck-button').setAttribute('aria-label', 'Re-check ' + h.name);
    part(row, 'host-last-check').title = h.last_check ? RD.fullTime(h.last_check) : '';
    tickHostRow(row);
  }

  function ago(iso) {
    var t = Date.parse(iso);
    if (!iso || isNaN(t) || t <= 0) return null;
    return RD.age((RD.serverNow() - t) / 1000);
  }

  function tickHostRow(row) {
    var h = row._h;
    var last = ago(h.last_check);
    setText(part(row, 'host-last-check'), last ? last + ' ago' : 'never');
    var since = ago(h.since);
    setText(part(row, 'host-since'), since ? 'for ' + since : '');
  }

  async function fetchHosts() {
    try {
      var d = await RD.api('GET', '/admin/api/hosts');
      var warm = new Map((d.warm || []).map(function (w) { return [String(w.host), w]; }));
      (d.hosts || []).forEach(function (h) { h._warm = warm.get(String(h.name)); });
      var list = (d.hosts || []).slice().sort(function (a, b) { return String(a.name).localeCompare(String(b.name)); });
      keyedRows($('hosts-body'), hostRows, list, function (h) { return String(h.name); },
        makeHostRow, updateHostRow, 'No hosts configured.', 7);
      showSummary(d.summary);
      hostsInfo = { at: Date.now(), failed: false };
      RD.clearAlert('hosts');
    } catch (err) {
      hostsInfo.failed = true;
      RD.showAlert(err, { key: 'hosts', kind: err.isTransient && err.isTransient() ? 'warning' : 'danger', title: 'Hosts:' });
    }
    updatedLabel($('hosts-updated'), hostsInfo);
  }

  function toggleDrain(name, button) {
    var row = hostRows.get(name);
    var drained = row && row._h && row._h.drained;
    RD.busy(button, async function () {
      try {
        await RD.api('POST', '/admin/api/hosts/' + (drained ? 'undrain' : 'drain'), { host: name });
        RD.toast((drained ? 'Undrained ' : 'Drained ') + name);
      } catch (err) {
        RD.showAlert(err, { title: 'Could not ' + (drained ? 'undrain ' : 'drain ') + name + '.' });
      }
    }).then(hosts.now);
  }

  function recheck(name, button) {
    RD.busy(button, async function () {
      try {
        await RD.api('POST', '/admin/api/hosts/check', { host: name });
        RD.toast('Checked ' + name);
      } catch (err) {
        RD.showAlert(err, { title: 'Could not check ' + name + '.' });
      }
    }).then(hosts.now);
  }

  // ---------- events ----------

  var feed = $('event-feed');
  var eventNodes = new Map(); // id -> li
  var streamOpenedAt = 0;

  function addEvent(e) {
    if (!e || typeof e !== 'object') return;
    var id = typeof e.id === 'number' ? e.id : null;
    if (id !== null && eventNodes.has(id)) return;
    var items = feed.children;
    // Newest (highest id) first; find where this one goes.
    var before = null;
    if (id !== null) {
      for (var i = 0; i < items.length; i++) {
        var other = items[i]._id;
        if (other === null || other < id) { before = items[i]; break; }
      }
      if (!before && items.length >= MAX_EVENTS) return; // older than everything kept
    } else {
      before = items[0] || null;
    }
    var level = /^(info|warn|error)$/.test(e.level) ? e.level : 'info';
    var who = [];
    if (e.host) who.push(e.host);
    if (e.user) who.push('user ' + e.user);
    var li = el('li', {
      className: 'event-item',
      'data-testid': 'event-item',
      'data-event-type': e.type || 'message',
      'data-event-id': id,
      'data-level': level
    },
      el('time', { className: 'event-time', datetime: e.time || null, title: e.time ? RD.fullTime(e.time) : null, text: RD.timeOfDay(e.time) || '' }),
      el('span', { className: 'event-type', text: e.type || 'message' }),
      el('span', { className: 'event-who', text: who.join(' · ') }),
      el('span', { className: 'event-message', text: e.message || '' })
    );
    li._id = id;
    if (streamOpenedAt && Date.now() - streamOpenedAt > 2000) li.classList.add('fresh');
    feed.insertBefore(li, before);
    if (id !== null) eventNodes.set(id, li);
    while (feed.children.length > MAX_EVENTS) {
      var last = feed.lastElementChild;
      if (last._id !== null) eventNodes.delete(last._id);
      last.remove();
    }
    $('event-empty').hidden = true;

    var type = e.type || '';
    if ((type === 'session_timer_started' || type === 'session_extended') && e.data && e.data.expires_at) {
      // The countdown is right from this moment, not from the next poll.
      var row = sessionRows.get(String(e.user));
      if (row) {
        row._deadline = RD.deadlineOf({ expires_at: e.data.expires_at });
        part(row, 'session-countdown').title = 'Expires ' + RD.fullTime(e.data.expires_at);
        part(row, 'admin-extend-button').disabled = false;
        tickSessionRow(row);
      }
    }
    if (REFRESH_SESSIONS.test(type)) sessions.soon();
    if (REFRESH_HOSTS.test(type)) hosts.soon();
  }

  function onMessage(msg) {
    var e;
    try { e = JSON.parse(msg.data); } catch (err) { return; }
    if (e && !e.type && msg.type && msg.type !== 'message') e.type = msg.type;
    addEvent(e);
  }

  var streamState = $('stream-state');
  function setStreamState(state, text) {
    streamState.setAttribute('data-state', state);
    setText(streamState, text);
  }

  var source = null;
  var retryDelay = 1000;

  function connect() {
    if (typeof EventSource === 'undefined') {
      setStreamState('offline', 'Live feed not supported by this browser');
      return;
    }
    setStreamState('connecting', 'Connecting…');
    source = new EventSource(RD.prefix + '/admin/api/events/stream');
    source.onopen = function () {
      retryDelay = 1000;
      streamOpenedAt = Date.now();
      setStreamState('live', 'Live');
    };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (an HTTP error, for example); start over.
        // The server replays recent events, and ids already shown are skipped.
        source.close();
        setStreamState('reconnecting', 'Reconnecting…');
        setTimeout(function () { loadRecent(); connect(); }, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 30000);
      } else {
        setStreamState('reconnecting', 'Reconnecting…');
      }
    };
    EVENT_TYPES.forEach(function (t) { source.addEventListener(t, onMessage); });
    source.onmessage = onMessage;
  }

  async function loadRecent() {
    try {
      var d = await RD.api('GET', '/admin/api/events/recent?limit=100');
      (d.events || []).forEach(addEvent);
    } catch (err) {
      // The stream replays too; only say something when the user must act.
      if (err.isAuth && err.isAuth()) RD.showAlert(err, { key: 'events' });
    }
  }

  $('event-filter').addEventListener('change', function () {
    feed.setAttribute('data-min-level', this.value);
  });

  // ---------- audit trail ----------

  // fetchAudit shows the newest 50 entries of the persisted audit trail
  // (GET /admin/api/audit), on load and on Refresh.
  async function fetchAudit() {
    var body = $('audit-body');
    try {
      var d = await RD.api('GET', '/admin/api/audit?limit=50');
      body.textContent = '';
      (d.entries || []).forEach(function (e) {
        body.appendChild(RD.el('tr', { 'data-testid': 'audit-row' },
          RD.el('td', null, RD.fullTime(e.time)),
          RD.el('td', null, e.actor_name ? e.actor_name + ' (' + e.actor + ')' : String(e.actor || '')),
          RD.el('td', null, String(e.action || '')),
          RD.el('td', null, e.user ? 'user ' + e.user : String(e.host || '')),
          RD.el('td', null, String(e.result || ''))));
      });
      if (!body.children.length) {
        body.appendChild(RD.el('tr', null, RD.el('td', { colspan: '5', className: 'empty' }, 'No admin actions recorded.')));
      }
      RD.clearAlert('audit');
    } catch (err) {
      RD.showAlert(err, { key: 'audit', kind: 'warning', title: 'Audit trail:' });
    }
  }
  $('audit-refresh').addEventListener('click', function () { RD.busy(this, fetchAudit); });

  // ---------- start ----------

  var sessions = poller(fetchSessions, SESSIONS_MS);
  var hosts = poller(fetchHosts, HOSTS_MS);
  $('sessions-refresh').addEventListener('click', function () { RD.busy(this, sessions.now); });
  $('hosts-refresh').addEventListener('click', function () { RD.busy(this, hosts.now); });

  setInterval(function () {
    sessionRows.forEach(tickSessionRow);
    hostRows.forEach(tickHostRow);
    updatedLabel($('sessions-updated'), sessionsInfo);
    updatedLabel($('hosts-updated'), hostsInfo);
  }, 1000);

  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'visible') { sessions.soon(); hosts.soon(); }
  });

  sessions.now();
  hosts.now();
  loadRecent();
  fetchAudit();
  connect();
})();
