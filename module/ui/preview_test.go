//go:build uitest

// Preview: the pages against a stub API on 127.0.0.1, looked at with
// headless Chromium. Not part of the normal test run:
//
//	go test -tags uitest -run TestPreview -v ./module/ui
//	UI_PREVIEW_OUT=/tmp/ui  ... keeps the screenshots there
//	UI_PREVIEW_WAIT=127.0.0.1:8099 ... serves until interrupted, for a real browser
//
// Each scenario has its own prefix, /<scenario>/remote-desktop, so one
// server shows every state without clicking.
package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const previewCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'self'"

type jsonMap = map[string]any

func ok(w http.ResponseWriter, status int, data any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(jsonMap{"success": true, "data": data})
}

func fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(jsonMap{"success": false, "error": jsonMap{"code": code, "message": msg}})
}

var stageOrder = []string{"queued", "scheduling", "starting", "waiting_for_desktop", "ready"}

func stagesUpTo(state string, start time.Time) []jsonMap {
	var out []jsonMap
	d := []time.Duration{0, 2100 * time.Millisecond, 2600 * time.Millisecond, 6300 * time.Millisecond, 14800 * time.Millisecond}
	for i, s := range stageOrder {
		out = append(out, jsonMap{"state": s, "at": start.Add(d[i]).Format(time.RFC3339Nano)})
		if s == state {
			break
		}
	}
	return out
}

type fakeSession struct {
	ID, UserID, UserName, State, Host, Error string
	Created                                  time.Time
	Remaining                                int // seconds; <0: timer not started
	ExtUsed, QueuePos                        int
	Prefix                                   string
}

func (s fakeSession) JSON(now time.Time) jsonMap {
	m := jsonMap{
		"id": s.ID, "user_id": s.UserID, "user_name": s.UserName, "state": s.State, "host": s.Host,
		"created_at": s.Created.Format(time.RFC3339), "ready_at": nil, "expires_at": nil,
		"remaining_seconds": 0, "extensions_used": s.ExtUsed, "max_extensions": 3,
		"extensions_left": 3 - s.ExtUsed, "extension_seconds": 1200, "queue_position": s.QueuePos,
		"stages": stagesUpTo(s.State, s.Created), "error": s.Error,
	}
	if s.State == "ready" {
		m["ready_at"] = s.Created.Add(15 * time.Second).Format(time.RFC3339)
		m["connect_url"] = s.Prefix + "/vnc/" + s.UserID + "/vnc.html#autoconnect=1&password=s3cr3t&path=" +
			strings.TrimPrefix(s.Prefix, "/") + "/vnc/" + s.UserID + "/websockify&resize=remote"
		if s.Remaining >= 0 {
			m["expires_at"] = now.Add(time.Duration(s.Remaining) * time.Second).Format(time.RFC3339)
			m["remaining_seconds"] = s.Remaining
		}
	}
	return m
}

// walk is the stateful scenario: create, stages advance every third poll,
// ready, extend, destroy.
type walk struct {
	mu      sync.Mutex
	created time.Time
	polls   int
	active  bool
	ext     int
	ended   string
}

func (wk *walk) session(prefix string) fakeSession {
	idx := min(wk.polls/3, len(stageOrder)-1)
	s := fakeSession{ID: "f00dfeedcafe0001", UserID: "7", UserName: "alice", State: stageOrder[idx], Host: "172.30.77.11",
		Created: wk.created, Remaining: 3600 - int(time.Since(wk.created).Seconds()) + wk.ext*1200, ExtUsed: wk.ext, Prefix: prefix}
	if idx == 0 {
		s.QueuePos = 3 - min(wk.polls, 2)
		s.Host = ""
	}
	return s
}

// record keeps what the pages sent that the test checks afterwards.
type record struct {
	mu      sync.Mutex
	actions []string // "kill {user_id:7}"
	csp     []string // CSP violation reports
}

func (r *record) add(list *[]string, s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*list = append(*list, s)
}

func (r *record) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.actions, r.csp = nil, nil
}

func (r *record) get() (actions, csp []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.actions...), append([]string(nil), r.csp...)
}

func previewHandler(t testing.TB, rec *record) http.Handler {
	var wk walk
	var eventID int
	var evMu sync.Mutex
	nextEvent := func(typ, level, host, user, msg string, at time.Time) jsonMap {
		evMu.Lock()
		defer evMu.Unlock()
		eventID++
		return jsonMap{"id": eventID, "time": at.Format(time.RFC3339), "type": typ, "level": level, "host": host, "user": user, "message": msg}
	}
	start := time.Now()
	recent := []jsonMap{
		nextEvent("host_check", "info", "172.30.77.11", "", "ssh, docker and image checks passed", start.Add(-41*time.Minute)),
		nextEvent("host_unhealthy", "error", "172.30.77.13", "", "docker: Cannot connect to the Docker daemon at unix:///var/run/docker.sock", start.Add(-40*time.Minute)),
		nextEvent("session_queued", "info", "", "7", "alice queued at position 1", start.Add(-38*time.Minute)),
		nextEvent("session_created", "info", "172.30.77.11", "7", "container rd-7-f00dfeed started", start.Add(-38*time.Minute)),
		nextEvent("session_ready", "info", "172.30.77.11", "7", "desktop ready after 14.8s", start.Add(-37*time.Minute)),
		nextEvent("creation_failed", "error", "172.30.77.12", "12", "start container on 172.30.77.12: image ctfd-remote-desktop:latest not found", start.Add(-20*time.Minute)),
		nextEvent("host_drained", "warn", "172.30.77.12", "", "drained by admin", start.Add(-19*time.Minute)),
		nextEvent("session_extended", "info", "172.30.77.11", "7", "extended by 20m (1 of 3)", start.Add(-12*time.Minute)),
		nextEvent("session_expired", "warn", "172.30.77.11", "4", "session of dave expired", start.Add(-3*time.Minute)),
		nextEvent("orphan_removed", "warn", "172.30.77.11", "", "removed container rd-99 with no session", start.Add(-2*time.Minute)),
	}

	adminSessions := func(prefix string) []jsonMap {
		now := time.Now()
		ss := []fakeSession{
			{ID: "a1", UserID: "7", UserName: "alice", State: "ready", Host: "172.30.77.11", Created: now.Add(-38 * time.Minute), Remaining: 2520, ExtUsed: 1},
			{ID: "b2", UserID: "12", UserName: "bob_the_pwner", State: "ready", Host: "172.30.77.11", Created: now.Add(-58 * time.Minute), Remaining: 245},
			{ID: "c3", UserID: "15", UserName: "carol", State: "ready", Host: "172.30.77.12", Created: now.Add(-119 * time.Minute), Remaining: 42, ExtUsed: 3},
			{ID: "d4", UserID: "21", UserName: "dmitri", State: "waiting_for_desktop", Host: "172.30.77.11", Created: now.Add(-9 * time.Second), Remaining: -1},
			{ID: "e5", UserID: "22", UserName: "eve", State: "queued", Created: now.Add(-2 * time.Second), Remaining: -1, QueuePos: 1},
		}
		var out []jsonMap
		for _, s := range ss {
			s.Prefix = prefix
			out = append(out, s.JSON(now))
		}
		return out
	}
	hosts := func() []jsonMap {
		now := time.Now()
		return []jsonMap{
			{"name": "172.30.77.11", "pub_hostname": "desk1.ctf.example", "health": "healthy", "since": now.Add(-41 * time.Minute).Format(time.RFC3339), "drained": false, "active": 3, "max_sessions": 10, "last_check": now.Add(-12 * time.Second).Format(time.RFC3339),
				"checks": []jsonMap{{"name": "ssh", "ok": true, "detail": "OpenSSH_9.2"}, {"name": "docker", "ok": true, "detail": "27.3.1"}, {"name": "image", "ok": true, "detail": "sha256:4f2a"}}},
			{"name": "172.30.77.12", "pub_hostname": "desk2.ctf.example", "health": "healthy", "since": now.Add(-20 * time.Minute).Format(time.RFC3339), "drained": true, "active": 1, "max_sessions": 0, "last_check": now.Add(-47 * time.Second).Format(time.RFC3339),
				"checks": []jsonMap{{"name": "ssh", "ok": true}, {"name": "docker", "ok": true}, {"name": "image", "ok": true}}},
			{"name": "172.30.77.13", "pub_hostname": "", "health": "unhealthy", "reason": "docker: Cannot connect to the Docker daemon", "since": now.Add(-40 * time.Minute).Format(time.RFC3339), "drained": false, "active": 0, "max_sessions": 10, "last_check": now.Add(-5 * time.Second).Format(time.RFC3339),
				"checks": []jsonMap{{"name": "ssh", "ok": true}, {"name": "docker", "ok": false, "detail": "Cannot connect to the Docker daemon at unix:///var/run/docker.sock"}, {"name": "image", "ok": false, "detail": "skipped"}}},
			{"name": "172.30.77.14", "health": "unknown", "drained": false, "active": 0, "max_sessions": 10, "last_check": nil},
		}
	}

	mux := http.NewServeMux()
	static := http.StripPrefix("/", http.FileServerFS(Files))
	// /slow holds the load event of the page that shows it: headless
	// Chromium takes its dump or screenshot at load, and a page with an
	// event stream never lets virtual time run out.
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
		}
		w.Header().Set("Content-Type", "image/svg+xml")
		fmt.Fprint(w, `<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>`)
	})
	// /frame shows a page full size in an iframe, for screenshots.
	mux.HandleFunc("/frame", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><title>frame</title><link rel="stylesheet" href="/frame.css"></head>`+
			`<body><iframe src="%s"></iframe><img src="/slow?ms=%s" alt=""></body></html>`,
			template.HTMLEscapeString(r.URL.Query().Get("src")), template.HTMLEscapeString(r.URL.Query().Get("hold")))
	})
	mux.HandleFunc("/frame.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css")
		fmt.Fprint(w, `html,body{margin:0;height:100%;overflow:hidden}iframe{border:0;width:100%;height:100%;display:block}img{position:absolute;width:1px;height:1px}`)
	})
	// /cspcheck breaks the policy on purpose, to show reports arrive.
	mux.HandleFunc("/cspcheck", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html><body><p style="color:red">inline style</p></body></html>`)
	})
	mux.HandleFunc("/csp-report", func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		io.Copy(&b, io.LimitReader(r.Body, 4096))
		rec.add(&rec.csp, b.String())
		w.WriteHeader(http.StatusNoContent)
	})
	for _, h := range []struct{ name, src, js string }{
		{"player", "/walk/remote-desktop", harnessPlayerJS},
		{"admin", "/admin/remote-desktop/admin", harnessAdminJS},
	} {
		mux.HandleFunc("/harness/"+h.name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!doctype html><html><head><title>harness</title><script defer src="/harness/%s.js"></script></head>`+
				`<body><pre id="log"></pre><iframe id="f" src="%s" width="1260" height="1400"></iframe>`+
				`<img src="/slow?ms=%s" alt="" width="1" height="1"></body></html>`, h.name, h.src, r.URL.Query().Get("hold"))
		})
		mux.HandleFunc("/harness/"+h.name+".js", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/javascript")
			fmt.Fprint(w, harnessCommonJS+h.js)
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 3)
		if len(parts) < 2 || parts[1] != "remote-desktop" {
			http.NotFound(w, r)
			return
		}
		scen, prefix := parts[0], "/"+parts[0]+"/remote-desktop"
		rest := ""
		if len(parts) == 3 {
			rest = "/" + parts[2]
		}
		now := time.Now()
		t.Logf("%s %s", r.Method, r.URL.Path)
		if r.Method == http.MethodPost && r.Header.Get("Content-Type") != "application/json" {
			fail(w, 415, "bad_content_type", "want application/json")
			return
		}
		switch {
		case strings.HasPrefix(rest, "/static/"):
			http.StripPrefix(prefix+"/static", static).ServeHTTP(w, r)
		case rest == "" || rest == "/admin":
			name := PlayerPage
			if rest == "/admin" {
				name = AdminPage
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			if err := Page(w, name, PageData{Prefix: prefix, UserName: "alice", Nonce: "abc123", Admin: true, SiteName: "Hack The Desk"}); err != nil {
				t.Error(err)
			}
		case scen == "login":
			fail(w, 401, "unauthenticated", "not logged in")
		case scen == "loginsvc":
			fail(w, 503, "identity_unavailable", "CTFd did not answer")
		case rest == "/api/status":
			switch scen {
			case "idle":
				ok(w, 200, jsonMap{"active": false, "session": nil})
			case "ended":
				s := fakeSession{ID: "x", UserID: "7", UserName: "alice", State: "failed", Created: now, Error: "no healthy host could start the desktop (172.30.77.13: image not found)", Prefix: prefix}
				ok(w, 200, jsonMap{"active": false, "session": s.JSON(now)})
			case "creating", "queued":
				st := map[string]string{"creating": "starting", "queued": "queued"}[scen]
				s := fakeSession{ID: "x", UserID: "7", UserName: "alice", State: st, Host: "172.30.77.11", Created: now.Add(-7 * time.Second), QueuePos: 3, Prefix: prefix}
				ok(w, 200, jsonMap{"active": true, "session": s.JSON(now)})
			case "ready", "warn", "danger":
				rem := map[string]int{"ready": 3540, "warn": 241, "danger": 37}[scen]
				s := fakeSession{ID: "f00dfeedcafe0001", UserID: "7", UserName: "alice", State: "ready", Host: "172.30.77.11", Created: now.Add(-time.Minute), Remaining: rem, ExtUsed: 1, Prefix: prefix}
				if scen == "danger" {
					s.ExtUsed = 3
				}
				ok(w, 200, jsonMap{"active": true, "session": s.JSON(now)})
			case "walk":
				wk.mu.Lock()
				defer wk.mu.Unlock()
				if !wk.active {
					var s any
					if wk.ended != "" {
						s = jsonMap{"state": wk.ended}
					}
					ok(w, 200, jsonMap{"active": false, "session": s})
					return
				}
				ok(w, 200, jsonMap{"active": true, "session": wk.session(prefix).JSON(now)})
			default:
				http.NotFound(w, r)
			}
		case rest == "/api/creation-status":
			switch scen {
			case "creating", "queued":
				st := map[string]string{"creating": "starting", "queued": "queued"}[scen]
				qp := 0
				if st == "queued" {
					qp = 3
				}
				ok(w, 200, jsonMap{"active": true, "state": st, "queue_position": qp, "stages": stagesUpTo(st, now.Add(-7*time.Second)), "error": ""})
			case "walk":
				wk.mu.Lock()
				defer wk.mu.Unlock()
				wk.polls++
				s := wk.session(prefix)
				ok(w, 200, jsonMap{"active": wk.active, "state": s.State, "queue_position": s.QueuePos, "stages": stagesUpTo(s.State, s.Created), "error": ""})
			default:
				ok(w, 200, jsonMap{"active": false, "state": "", "queue_position": 0, "stages": []any{}, "error": ""})
			}
		case rest == "/api/create" && scen == "walk":
			wk.mu.Lock()
			defer wk.mu.Unlock()
			wk.created, wk.polls, wk.active, wk.ext, wk.ended = now, 0, true, 0, ""
			ok(w, 202, jsonMap{"session": wk.session(prefix).JSON(now)})
		case rest == "/api/extend" && scen == "walk":
			wk.mu.Lock()
			defer wk.mu.Unlock()
			if wk.ext >= 3 {
				fail(w, 409, "max_extensions", "No extensions left")
				return
			}
			wk.ext++
			ok(w, 200, jsonMap{"session": wk.session(prefix).JSON(now)})
		case rest == "/api/extend":
			fail(w, 409, "max_extensions", "No extensions left")
		case rest == "/api/destroy" && scen == "walk":
			wk.mu.Lock()
			defer wk.mu.Unlock()
			wk.active, wk.ended = false, "destroyed"
			ok(w, 200, jsonMap{})
		case rest == "/admin/api/containers":
			ok(w, 200, jsonMap{"sessions": adminSessions(prefix)})
		case rest == "/admin/api/hosts":
			ok(w, 200, jsonMap{"hosts": hosts()})
		case rest == "/admin/api/events/recent":
			ok(w, 200, jsonMap{"events": recent})
		case rest == "/admin/api/audit":
			ok(w, 200, jsonMap{"entries": []jsonMap{{"time": now.Add(-3 * time.Minute), "actor": "1", "actor_name": "admin",
				"action": "session_viewed", "user": "7", "result": "ok"}}})
		case rest == "/admin/api/kill", rest == "/admin/api/extend", strings.HasPrefix(rest, "/admin/api/hosts/"):
			var body map[string]string
			json.NewDecoder(r.Body).Decode(&body)
			rec.add(&rec.actions, fmt.Sprintf("%s %v", strings.TrimPrefix(rest, "/admin/api/"), body))
			ok(w, 200, jsonMap{})
		case rest == "/admin/api/events/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-store")
			fl := w.(http.Flusher)
			for _, e := range recent {
				fmt.Fprintf(w, "id: %v\nevent: %s\ndata: %s\n\n", e["id"], e["type"], mustJSON(e))
			}
			fl.Flush()
			tick := time.NewTicker(1500 * time.Millisecond)
			defer tick.Stop()
			for i := 0; i < 3; i++ {
				select {
				case <-r.Context().Done():
					return
				case <-tick.C:
					e := nextEvent("session_viewed", "info", "172.30.77.11", "7", "alice opened the desktop", time.Now())
					fmt.Fprintf(w, "id: %v\nevent: %s\ndata: %s\n\n", e["id"], e["type"], mustJSON(e))
					fl.Flush()
				}
			}
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", previewCSP+"; report-uri /csp-report")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		mux.ServeHTTP(w, r)
	})
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// The harnesses drive a page inside an iframe (same origin) and write what
// they saw into #log, which the test reads with --dump-dom.
const harnessCommonJS = `
var log = document.getElementById('log'), f = document.getElementById('f');
function out(s) { log.textContent += s + '\n'; }
function q(id, root) { return (root || f.contentDocument).querySelector('[data-testid="' + id + '"]'); }
function qa(sel) { return f.contentDocument.querySelectorAll(sel); }
function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }
async function until(fn, ms) { for (var i = 0; i < ms / 50; i++) { try { if (fn()) return true; } catch (e) {} await sleep(50); } out('TIMEOUT ' + fn); return false; }
function stub() {
  f.contentWindow.confirm = function (m) { out('CONFIRM ' + m); return true; };
  f.contentWindow.open = function (u, target, features) { out('OPEN ' + u + ' ' + target + ' ' + features); return null; };
}
`

const harnessPlayerJS = `
f.addEventListener('load', async function () {
  stub();
  await until(function () { return !q('idle-view').hidden; }, 3000);
  out('IDLE start=' + q('start-button').textContent);
  q('start-button').click();
  var seen = '';
  await until(function () {
    var l = q('stage-label').textContent + ' [' + q('progress-bar').getAttribute('aria-valuenow') + ']';
    if (l !== seen && !q('creating-view').hidden) { seen = l; out('STAGE ' + l); }
    return !q('ready-view').hidden;
  }, 20000);
  await until(function () { return q('countdown').textContent !== '--:--'; }, 6000);
  out('READY countdown=' + q('countdown').textContent + ' extend=' + q('extend-button').textContent);
  q('connect-button').click();
  q('extend-button').click();
  await until(function () { return /2 left/.test(q('extend-button').textContent); }, 3000);
  out('EXTENDED countdown=' + q('countdown').textContent + ' extend=' + q('extend-button').textContent);
  q('destroy-button').click();
  await until(function () { return !q('idle-view').hidden; }, 3000);
  out('ENDED ' + q('ended-notice').textContent.replace(/\s+/g, ' ').trim() + ' start=' + q('start-button').textContent);
  out('DONE');
});
`

const harnessAdminJS = `
var loaded = false;
f.addEventListener('load', function () { loaded = true; });
(async function () {
  await until(function () { return f.contentWindow.RD && f.contentDocument.readyState !== 'loading'; }, 5000);
  stub();
  await until(function () { return q('session-row-7') && q('host-row-172.30.77.13'); }, 5000);
  out('ROWS sessions=' + qa('[data-testid^="session-row-"]').length + ' hosts=' + qa('[data-testid^="host-row-"]').length);
  await until(function () { return q('event-stream-state').getAttribute('data-state') === 'live'; }, 5000);
  await until(function () { return qa('[data-event-type="session_viewed"]').length > 0; }, 8000);
  var items = qa('[data-testid="event-item"]');
  out('EVENTS n=' + items.length + ' first=' + items[0].getAttribute('data-event-type') + ' stream=' + q('event-stream-state').getAttribute('data-state'));
  q('kill-button', q('session-row-7')).click();
  await until(function () { return q('toast'); }, 3000);
  out('TOAST ' + q('toast').textContent);
  q('admin-extend-button', q('session-row-12')).click();
  q('open-button', q('session-row-15')).click();
  q('drain-button', q('host-row-172.30.77.11')).click();
  q('drain-button', q('host-row-172.30.77.12')).click();
  q('recheck-button', q('host-row-172.30.77.13')).click();
  await sleep(1000);
  f.contentDocument.querySelector('#event-filter').value = 'error';
  f.contentDocument.querySelector('#event-filter').dispatchEvent(new Event('change'));
  var shown = Array.prototype.filter.call(qa('[data-testid="event-item"]'), function (n) { return n.offsetParent !== null; });
  out('FILTER error shown=' + shown.length);
  out('LOADED ' + loaded);
  out('DONE');
})();
`

func TestPreview(t *testing.T) {
	addr := os.Getenv("UI_PREVIEW_WAIT")
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	rec := &record{}
	srv := &http.Server{Handler: previewHandler(t, rec)}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	t.Logf("serving on %s", base)
	if os.Getenv("UI_PREVIEW_WAIT") != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		<-ctx.Done()
		return
	}
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed")
	}
	outDir := os.Getenv("UI_PREVIEW_OUT")
	if outDir == "" {
		outDir = t.TempDir()
	}
	shots := []struct {
		name, path string
		height     int
		budget     int
	}{
		{"player-idle", "/idle/remote-desktop", 900, 3000},
		{"player-ended", "/ended/remote-desktop", 900, 3000},
		{"player-queued", "/queued/remote-desktop", 900, 3000},
		{"player-creating", "/creating/remote-desktop", 900, 3000},
		{"player-ready", "/ready/remote-desktop", 900, 3000},
		{"player-warn", "/warn/remote-desktop", 900, 3000},
		{"player-danger", "/danger/remote-desktop", 900, 3000},
		{"player-login", "/login/remote-desktop", 700, 3000},
		{"player-loginsvc", "/loginsvc/remote-desktop", 700, 3000},
		{"admin", "/frame?hold=4000&src=/admin/remote-desktop/admin", 1500, 0},
		{"harness-player", "/harness/player?hold=0", 1200, 30000},
	}
	// The violation detector works: an inline style is reported.
	chromium(t, browser, "--dump-dom", "--virtual-time-budget=2000", base+"/cspcheck")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, csp := rec.get(); len(csp) > 0 || time.Now().After(deadline) {
			if len(csp) == 0 {
				t.Fatal("no CSP report for /cspcheck: violations would go unnoticed")
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	rec.reset()

	consoleRE := regexp.MustCompile(`CONSOLE|Content Security Policy|Uncaught|Refused`)
	for _, s := range shots {
		png := filepath.Join(outDir, s.name+".png")
		args := []string{"--screenshot=" + png, "--window-size=1280," + strconv.Itoa(s.height)}
		if s.budget > 0 {
			args = append(args, "--virtual-time-budget="+strconv.Itoa(s.budget))
		}
		out := chromium(t, browser, append(args, base+s.path)...)
		for _, line := range strings.Split(out, "\n") {
			if consoleRE.MatchString(line) {
				t.Errorf("%s: %s", s.name, line)
			}
		}
		t.Logf("%s -> %s", s.name, png)
	}
	logOf := func(dom string) string {
		m := regexp.MustCompile(`(?s)<pre id="log">(.*?)</pre>`).FindStringSubmatch(dom)
		if m == nil {
			t.Fatalf("no harness log in DOM")
		}
		return html.UnescapeString(m[1])
	}
	player := logOf(chromium(t, browser, "--dump-dom", "--virtual-time-budget=30000", base+"/harness/player?hold=0"))
	t.Logf("player harness:\n%s", player)
	for _, want := range []string{
		"STAGE Waiting in queue (position 3) [8]", "STAGE Choosing a host [25]", "STAGE Starting container [50]",
		"STAGE Waiting for the desktop [75]", "READY countdown=1:00:00 extend=Extend (+20 min, 3 left)",
		"/walk/remote-desktop/vnc/7/vnc.html#autoconnect=1&password=s3cr3t&path=walk/remote-desktop/vnc/7/websockify&resize=remote _blank noopener",
		"EXTENDED countdown=1:20:00 extend=Extend (+20 min, 2 left)", "CONFIRM Destroy your desktop?",
		"ENDED You destroyed your desktop. start=Start a new desktop", "DONE",
	} {
		if !strings.Contains(player, want) {
			t.Errorf("player harness log lacks %q", want)
		}
	}
	// The dashboard's event stream never ends, so it gets wall-clock time.
	admin := logOf(chromium(t, browser, "--dump-dom", base+"/harness/admin?hold=12000"))
	t.Logf("admin harness:\n%s", admin)
	for _, want := range []string{
		"ROWS sessions=5 hosts=4", "first=session_viewed stream=live", "CONFIRM Kill the desktop of alice (#7)?",
		"TOAST Killed the session of alice (#7)", "/admin/remote-desktop/vnc/15/vnc.html#autoconnect=1", "FILTER error shown=2", "DONE",
	} {
		if !strings.Contains(admin, want) {
			t.Errorf("admin harness log lacks %q", want)
		}
	}
	if strings.Contains(admin, "TIMEOUT") || strings.Contains(player, "TIMEOUT") {
		t.Error("a harness step timed out")
	}
	actions, csp := rec.get()
	t.Logf("admin actions: %q", actions)
	for _, want := range []string{"kill map[user_id:7]", "extend map[user_id:12]", "hosts/drain map[host:172.30.77.11]", "hosts/undrain map[host:172.30.77.12]", "hosts/check map[host:172.30.77.13]"} {
		if !slices.Contains(actions, want) {
			t.Errorf("admin action %q not received", want)
		}
	}
	for _, r := range csp {
		t.Errorf("CSP violation: %s", r)
	}
}

func chromium(t *testing.T, browser string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--no-proxy-server",
		// Nothing but loopback: Chromium's own background services get no DNS.
		"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
		"--enable-logging=stderr", "--v=0", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, browser, append(base, args...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Logf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String() + "\n" + stderr.String()
}
