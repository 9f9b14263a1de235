/* Shared helpers for the Remote Desktop pages: the API client, alerts,
 * toasts and time formatting. Exposed as window.RD. No dependencies. */
(function () {
  'use strict';

  var prefix = (document.body.getAttribute('data-prefix') || '/remote-desktop').replace(/\/+$/, '');

  // Milliseconds to add to Date.now() to get the server's clock, estimated
  // from the Date header of API responses (second precision, so changes
  // under 1.5 s are ignored as noise).
  var clockOffset = 0;

  function ApiError(status, code, message) {
    this.name = 'ApiError';
    this.status = status;
    this.code = code || '';
    this.message = message || 'Request failed';
  }
  ApiError.prototype = Object.create(Error.prototype);
  ApiError.prototype.constructor = ApiError;

  // Auth errors need the user, not a retry.
  // A ban ends polling too: nothing changes until an admin lifts it.
  ApiError.prototype.isAuth = function () { return this.status === 401 || this.code === 'banned'; };
  // Worth retrying by itself: network trouble, gateway errors, a
  // temporarily unavailable login service.
  ApiError.prototype.isTransient = function () {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
  };

  var LOGIN_UNAVAILABLE = 'The login service is unavailable, try again shortly';

  function noteDate(header) {
    if (!header) return;
    var server = Date.parse(header);
    if (isNaN(server)) return;
    var off = server + 500 - Date.now();
    if (Math.abs(off - clockOffset) > 1500) clockOffset = off;
  }

  /**
   * api calls prefix+path and resolves to the "data" member of a
   * {"success": true, "data": ...} answer, or rejects with an ApiError.
   */
  async function api(method, path, payload) {
    var opts = {
      method: method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { 'Accept': 'application/json' }
    };
    if (method !== 'GET' && method !== 'HEAD') {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(payload || {});
    }
    var resp;
    try {
      resp = await fetch(prefix + path, opts);
    } catch (e) {
      throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection.');
    }
    noteDate(resp.headers.get('Date'));
    var json = null;
    try { json = await resp.json(); } catch (e) { json = null; }
    var err = json && json.error && typeof json.error === 'object' ? json.error : null;

    if (resp.ok && json && json.success !== false) return json.data || {};
    if (resp.status === 401) throw new ApiError(401, err && err.code || 'unauthenticated', 'You are not logged in');
    if (resp.status === 503 && (!err || /auth|login|identity|ctfd/i.test(err.code || ''))) {
      throw new ApiError(503, err && err.code || 'login_unavailable', LOGIN_UNAVAILABLE);
    }
    if (resp.status === 429) {
      // Too many creates/destroys: the server's message says how long to wait.
      var e429 = new ApiError(429, err && err.code || 'rate_limited',
        err && err.message || 'Too many requests; please wait a moment.');
      e429.retryAfter = parseInt(resp.headers.get('Retry-After') || '0', 10) || 0;
      throw e429;
    }
    if (err && err.message) throw new ApiError(resp.status, err.code, err.message);
    if (resp.ok) throw new ApiError(resp.status, 'bad_response', 'Unexpected answer from the server');
    throw new ApiError(resp.status, 'http_' + resp.status,
      'Server error (' + resp.status + (resp.statusText ? ' ' + resp.statusText : '') + ')');
  }

  function serverNow() { return Date.now() + clockOffset; }

  /** deadlineOf returns the local Date.now() value at which s expires, or null. */
  function deadlineOf(s) {
    if (!s || !s.expires_at) return null;
    if (typeof s.remaining_seconds === 'number' && isFinite(s.remaining_seconds)) {
      return Date.now() + Math.max(0, s.remaining_seconds) * 1000;
    }
    var t = Date.parse(s.expires_at);
    return isNaN(t) ? null : t - clockOffset;
  }

  function pad(n) { return n < 10 ? '0' + n : String(n); }

  /** clock formats seconds as mm:ss, or h:mm:ss from one hour up. */
  function clock(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    return h > 0 ? h + ':' + pad(m) + ':' + pad(s) : pad(m) + ':' + pad(s);
  }

  /** age formats seconds as "42s", "5m 03s", "2h 07m", "3d 4h". */
  function age(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + 's';
    if (seconds < 3600) return Math.floor(seconds / 60) + 'm ' + pad(seconds % 60) + 's';
    if (seconds < 86400) return Math.floor(seconds / 3600) + 'h ' + pad(Math.floor(seconds % 3600 / 60)) + 'm';
    return Math.floor(seconds / 86400) + 'd ' + Math.floor(seconds % 86400 / 3600) + 'h';
  }

  /** minutes formats a duration in seconds for button labels: "20 min", "1 h". */
  function minutes(seconds) {
    var m = Math.round(seconds / 60);
    if (m >= 60 && m % 60 === 0) return (m / 60) + ' h';
    return m + ' min';
  }

  // The first locale formatter a page makes costs ~50 ms here (ICU
  // starting up), which would land on the moment a desktop becomes ready,
  // beside its first connection: it is made once, when the page is idle.
  var timeFormat = null;
  function timeOfDayFormat() {
    if (!timeFormat) timeFormat = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
    return timeFormat;
  }
  (window.requestIdleCallback || setTimeout)(timeOfDayFormat);

  function timeOfDay(iso) {
    var t = Date.parse(iso);
    if (isNaN(t)) return '';
    return timeOfDayFormat().format(new Date(t));
  }

  function fullTime(iso) {
    var t = Date.parse(iso);
    return isNaN(t) ? '' : new Date(t).toLocaleString();
  }

  /** el builds an element; text children are added as text nodes, never HTML. */
  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === 'text') node.textContent = v;
        else if (k === 'className') node.className = v;
        else if (k === 'hidden') node.hidden = !!v;
        else node.setAttribute(k, v === true ? '' : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return node;
  }

  var alertsBox = document.getElementById('alerts');

  /**
   * showAlert puts an alert box above the page content. kind is danger,
   * warning, info or success. An alert with a key replaces the previous
   * one with the same key. err may be an ApiError or a string.
   */
  function showAlert(err, opts) {
    opts = opts || {};
    var kind = opts.kind || 'danger';
    var key = opts.key || '';
    if (key) clearAlert(key);
    var msg = typeof err === 'string' ? err : (err && err.message) || 'Something went wrong';
    var box = el('div', {
      className: 'alert alert-' + kind + ' alert-dismissible',
      role: kind === 'danger' ? 'alert' : 'status',
      'data-testid': 'alert',
      'data-key': key || null,
      'data-code': err && err.code || null
    });
    if (opts.title) box.appendChild(el('strong', { text: opts.title + ' ' }));
    box.appendChild(document.createTextNode(msg));
    if (err && err.status === 401) {
      box.appendChild(document.createTextNode('. '));
      box.appendChild(el('a', {
        href: '/login?next=' + encodeURIComponent(location.pathname),
        'data-testid': 'login-link'
      }, 'Log in'));
    } else if (err && err.code && err.status && err.status !== 503 && !/^http_/.test(err.code)) {
      box.appendChild(el('span', { className: 'alert-code', text: '(' + err.code + ')' }));
    }
    var close = el('button', { type: 'button', className: 'close', 'aria-label': 'Dismiss' }, '×');
    close.addEventListener('click', function () { box.remove(); });
    box.appendChild(close);
    alertsBox.appendChild(box);
    return box;
  }

  function clearAlert(key) {
    if (!key) { alertsBox.textContent = ''; return; }
    alertsBox.querySelectorAll('[data-key="' + key + '"]').forEach(function (n) { n.remove(); });
  }

  var toastArea = null;
  /** toast shows a short confirmation that goes away by itself. */
  function toast(msg) {
    if (!toastArea) {
      toastArea = el('div', { className: 'toast-area', role: 'status', 'aria-live': 'polite', 'data-testid': 'toasts' });
      document.body.appendChild(toastArea);
    }
    var t = el('div', { className: 'toast', 'data-testid': 'toast' }, msg);
    toastArea.appendChild(t);
    setTimeout(function () { t.remove(); }, 4000);
  }

  var announcer = document.getElementById('announcer');
  /** announce tells screen readers about a change that has no focus. */
  function announce(msg) {
    if (!announcer) return;
    announcer.textContent = '';
    setTimeout(function () { announcer.textContent = msg; }, 50);
  }

  /**
   * busy disables a button while fn runs so a double click sends one
   * request, and shows a spinner on it.
   */
  async function busy(button, fn) {
    if (button.disabled) return;
    button.disabled = true;
    button.classList.add('busy');
    button.setAttribute('aria-busy', 'true');
    try {
      return await fn();
    } finally {
      button.classList.remove('busy');
      button.removeAttribute('aria-busy');
      button.disabled = false;
    }
  }

  /**
   * openSession opens a desktop in a new tab. The URL carries the VNC
   * password in its fragment, so it is neither logged nor kept in the DOM.
   */
  function openSession(url) {
    var u;
    try { u = new URL(url, location.href); } catch (e) { return false; }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') return false;
    window.open(u.href, '_blank', 'noopener');
    return true;
  }

  window.RD = {
    prefix: prefix,
    api: api,
    ApiError: ApiError,
    serverNow: serverNow,
    deadlineOf: deadlineOf,
    clock: clock,
    age: age,
    minutes: minutes,
    timeOfDay: timeOfDay,
    fullTime: fullTime,
    el: el,
    showAlert: showAlert,
    clearAlert: clearAlert,
    toast: toast,
    announce: announce,
    busy: busy,
    openSession: openSession
  };
})();
