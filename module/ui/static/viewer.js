/* The desktop in the player's page. noVNC's RFB client, from the trusted
 * copy Caddy serves under /novnc/<digest>/ (the page fetched it ahead),
 * draws the desktop here, so a ready desktop is on screen as soon as its
 * websocket answers: no tab to start, no page to compile. The new tab
 * (noVNC's own page, with its clipboard and settings) stays one click away.
 *
 * The desktop is hostile: nothing it sends becomes markup. Its name and
 * bell are ignored, its clipboard only ever becomes a textarea's value
 * (cut to CLIPBOARD_MAX), and its pixels only reach the canvas (app.css
 * caps the cursor noVNC draws itself on touch devices). A desktop that
 * keeps dropping its connection is retried ever more slowly.
 *
 * html[data-viewer] says whether the client loaded (loading, ready,
 * unavailable) and #viewer[data-state] what it is doing (connecting,
 * connected, reconnecting, away); tests read both. */
(function () {
  'use strict';
  var RD = window.RD;
  var RETRY_MS = [500, 1000, 2000, 4000, 8000];
  // A desktop that accepts the websocket but never finishes the handshake
  // (hung, or not speaking RFB) is let go and retried after this long.
  var CONNECT_TIMEOUT_MS = 15000;
  // Only a connection that lasted this long resets the back-off.
  var STABLE_MS = 10000;
  var CLIPBOARD_MAX = 1 << 20; // characters of the desktop's clipboard shown

  // RD.viewer returns the page's viewer. onLost is called when an open
  // connection drops (the desktop may have ended: the page asks).
  RD.viewer = function (onLost) {
    var $ = function (id) { return document.getElementById(id); };
    var root = $('viewer'), screen = $('viewer-screen'), statusEl = $('viewer-status');
    var showBtn = $('viewer-show'), fullBtn = $('viewer-fullscreen');
    var clipBtn = $('viewer-clipboard-toggle'), clipBox = $('viewer-clipboard'), clipText = $('viewer-clipboard-text');
    var RFB = null;      // noVNC's client class, once loaded
    var target = null;   // {key, url, password} of the desktop to show
    var away = false;    // the player opened the desktop in another tab
    var rfb = null, retries = 0, timer = null, deadline = null, connectedAt = 0;
    var pasted = null;   // the box's text last given to the desktop

    document.documentElement.setAttribute('data-viewer', 'loading');

    function state(st, text) {
      root.setAttribute('data-state', st);
      if (statusEl.textContent !== text) statusEl.textContent = text;
      showBtn.hidden = st !== 'away';
      screen.hidden = st === 'away'; // no empty box while the desktop is elsewhere
      fullBtn.disabled = st === 'away';
    }

    function stop() {
      clearTimeout(timer);
      clearTimeout(deadline);
      timer = deadline = null;
      if (rfb) {
        var r = rfb;
        rfb = null; // its disconnect event then finds nothing to retry
        r.disconnect();
      }
    }

    // forget drops the connection and what belonged to the last desktop.
    function forget() {
      stop();
      clipText.value = '';
      pasted = null;
      away = false;
      retries = 0;
    }

    function sync() {
      root.hidden = !RFB || !target;
      if (root.hidden || away || rfb || timer) return;
      connect();
    }

    function connect() {
      var r;
      try {
        r = new RFB(screen, target.url, { credentials: { password: target.password }, shared: true });
      } catch (e) {
        return lost();
      }
      rfb = r;
      connectedAt = 0;
      r.focusOnClick = true;
      // The same words on every retry: a screen reader says them once.
      state(retries ? 'reconnecting' : 'connecting', retries ? 'Connection lost; reconnecting…' : 'Connecting…');
      clearTimeout(deadline);
      deadline = setTimeout(function () { if (rfb === r) r.disconnect(); }, CONNECT_TIMEOUT_MS);
      r.addEventListener('connect', function () {
        if (rfb !== r) return;
        clearTimeout(deadline);
        // Scaling reads the layout: set here, not beside the websocket's
        // start, where a layout of the just-shown page would delay it.
        r.scaleViewport = true;
        connectedAt = Date.now();
        state('connected', 'Connected. Click the desktop to type into it, outside it to type elsewhere.');
        // Text put in the box while there was no connection goes now.
        if (clipText.value && clipText.value !== pasted) paste();
      });
      r.addEventListener('credentialsrequired', function () { if (rfb === r) r.disconnect(); });
      r.addEventListener('clipboard', function (e) {
        // Never over what the player is typing there.
        if (rfb !== r || !e.detail || document.activeElement === clipText) return;
        clipText.value = pasted = String(e.detail.text).slice(0, CLIPBOARD_MAX);
      });
      r.addEventListener('disconnect', function () {
        if (rfb !== r) return;
        clearTimeout(deadline);
        rfb = null;
        if (connectedAt && Date.now() - connectedAt >= STABLE_MS) retries = 0;
        lost();
      });
    }

    // lost retries, sooner at first, for as long as the page still has the
    // desktop; the page's status poll ends it when the desktop is gone.
    function lost() {
      state('reconnecting', 'Connection lost; reconnecting…');
      clearTimeout(timer);
      timer = setTimeout(function () { timer = null; sync(); }, RETRY_MS[Math.min(retries, RETRY_MS.length - 1)]);
      retries++;
      if (onLost) onLost();
    }

    showBtn.addEventListener('click', function () {
      away = false;
      retries = 0;
      sync();
    });
    clipBtn.addEventListener('click', function () {
      clipBox.hidden = !clipBox.hidden;
      clipBtn.setAttribute('aria-expanded', String(!clipBox.hidden));
      if (!clipBox.hidden) clipText.focus();
    });
    function paste() {
      if (!rfb || !connectedAt) return; // sent once connected
      pasted = clipText.value;
      rfb.clipboardPasteFrom(pasted);
    }
    // As noVNC's own panel does: the text goes when the box is left.
    clipText.addEventListener('change', paste);
    // Full screen takes the whole viewer, so the clipboard box comes along.
    fullBtn.addEventListener('click', function () {
      if (root.requestFullscreen) root.requestFullscreen().catch(function () {});
      if (rfb) rfb.focus();
    });

    return {
      // load imports the client from base (a /novnc/<digest>/ path).
      load: function (base) {
        return import(base + 'core/rfb.js').then(function (m) {
          if (typeof m.default !== 'function') throw new Error('core/rfb.js has no client');
          RFB = m.default;
          document.documentElement.setAttribute('data-viewer', 'ready');
        }, function () {
          document.documentElement.setAttribute('data-viewer', 'unavailable');
        }).then(sync);
      },
      // show shows the desktop at connectURL (noVNC's page with
      // #password=…&path=… in its fragment); key names the session, so
      // that a new session is shown here again.
      show: function (connectURL, key) {
        var u, f;
        try {
          u = new URL(connectURL, location.href);
          f = new URLSearchParams(u.hash.slice(1));
        } catch (e) {
          return this.hide();
        }
        var path = f.get('path') || '';
        // The page may connect to its own origin only (connect-src 'self').
        if (!path || u.origin !== location.origin) return this.hide();
        if (target && target.key === key) return sync();
        forget();
        target = {
          key: key,
          url: u.protocol.replace('http', 'ws') + '//' + u.host + '/' + path.replace(/^\//, ''),
          password: f.get('password') || ''
        };
        sync();
      },
      // away closes the connection here: the desktop is in another tab.
      away: function () {
        if (!target) return;
        stop();
        away = true;
        state('away', 'Your desktop is open in another tab.');
        sync();
      },
      hide: function () {
        forget();
        target = null;
        root.removeAttribute('data-state');
        sync();
      }
    };
  };
})();
