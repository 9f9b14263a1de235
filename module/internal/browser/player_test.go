package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
)

// playerHooks replaces window.open (Connect's new tab: the URL is kept for
// the test to open) and window.confirm (always yes), and records every
// value the progress bar's data-stage takes.
const playerHooks = `(() => {
	const e2e = window.__e2e = {opened: [], confirms: [], stages: []};
	window.open = (url, target, features) => {
		e2e.opened.push({url: String(url), target: String(target), features: String(features)});
		return null;
	};
	window.confirm = (msg) => { e2e.confirms.push(String(msg)); return true; };
	const bar = document.querySelector('[data-testid="progress-bar"]');
	new MutationObserver(() => {
		const v = bar.getAttribute('data-stage');
		if (e2e.stages[e2e.stages.length - 1] !== v) e2e.stages.push(v);
	}).observe(bar, {attributes: true, attributeFilter: ['data-stage']});
	return true;
})()`

// visible is a JavaScript test that the element with that data-testid is
// shown.
func visible(testid string) string {
	return fmt.Sprintf(`(() => { const e = document.querySelector('%s'); return !!e && !e.hidden && e.offsetParent !== null; })()`, testidSel(testid))
}

// playerState describes the player page for failure messages.
const playerState = `({
	views: [...document.querySelectorAll('section[data-testid$="-view"]')].filter(s => !s.hidden).map(s => s.dataset.testid),
	stage: document.querySelector('[data-testid="progress-bar"]').dataset.stage,
	alerts: document.querySelector('[data-testid="alerts"]').innerText,
	ended: document.querySelector('[data-testid="ended-notice"]').innerText,
	countdown: document.querySelector('[data-testid="countdown"]').innerText,
})`

// openPlayer opens the player page in a browser context of its own, logged
// in as user id.
func (j *journey) openPlayer(name string, id int, before ...string) *tab {
	j.t.Helper()
	p := j.b.newContext(name)
	p.setCookie(j.Caddy.URL, "session", j.Login(id))
	p.do("viewport", chromedp.EmulateViewport(pageWidth, pageHeight))
	for _, src := range before {
		p.beforeScripts(src)
	}
	page := j.Caddy.URL + "/remote-desktop"
	if resp := p.navigate(page); resp.Status != 200 {
		p.fail("GET %s: %d", page, resp.Status)
	}
	p.waitJS("idle view", visible("idle-view"), playerState, 15*time.Second)
	eval[bool](p, playerHooks)
	return p
}

var stageOrder = map[string]int{"queued": 0, "scheduling": 1, "starting": 2, "waiting_for_desktop": 3, "ready": 4}

// startAndWait clicks Start, follows the progress bar to Ready, and returns
// the URL Connect opens.
func (j *journey) startAndWait(p *tab, run string) string {
	j.t.Helper()
	eval[bool](p, `(window.__e2e.stages = [], window.__e2e.opened = [], true)`)
	start := time.Now()
	p.click("start-button")
	p.waitJS("creating or ready view", visible("creating-view")+" || "+visible("ready-view"), playerState, 15*time.Second)
	if run == "run 1" && eval[bool](p, visible("creating-view")) {
		j.shot(p, "player-starting")
	}
	p.waitJS("ready view", visible("ready-view"), playerState, 90*time.Second)
	ready := time.Since(start)
	// The first status poll once ready starts the timer.
	p.waitJS("countdown running", `/^\d+:\d\d(:\d\d)?$/.test(document.querySelector('[data-testid="countdown"]').innerText)`,
		playerState, 15*time.Second)

	stages := eval[[]string](p, `window.__e2e.stages`)
	j.timing("%s: Start → Ready view in %s (stages seen on the progress bar: %s)", run, ready.Round(time.Millisecond), strings.Join(stages, " → "))
	if len(stages) < 2 || stages[len(stages)-1] != "ready" {
		j.t.Errorf("%s: the progress bar went %v: want at least 2 stages, ending at ready", run, stages)
	}
	for i := 1; i < len(stages); i++ {
		a, okA := stageOrder[stages[i-1]]
		b, okB := stageOrder[stages[i]]
		if !okA || !okB || b < a {
			j.t.Errorf("%s: the progress bar went %v: unknown stage or backwards", run, stages)
			break
		}
	}
	if n := eval[int](p, `document.querySelectorAll('#steps li.done').length`); n != len(stageOrder) {
		j.t.Errorf("%s: %d of %d stages marked done once ready", run, n, len(stageOrder))
	}
	left := clockSeconds(j.t, eval[string](p, `document.querySelector('[data-testid="countdown"]').innerText`))
	if left < initialDuration-30 || left > initialDuration {
		j.t.Errorf("%s: countdown shows %ds left, want about %d", run, left, initialDuration)
	}
	if got, want := eval[string](p, `document.querySelector('[data-testid="extend-button"]').innerText`),
		fmt.Sprintf("Extend (+%d min, %d left)", extensionDuration/60, maxExtensions); got != want {
		j.t.Errorf("%s: extend button says %q, want %q", run, got, want)
	}

	// Connect opens the desktop in a new tab, with the password in the
	// fragment only.
	p.click("connect-button")
	p.waitJS("window.open called", `window.__e2e.opened.length === 1`, `window.__e2e.opened.length`, 5*time.Second)
	var opened struct{ URL, Target, Features string }
	raw := eval[[]byte](p, `window.__e2e.opened[0]`)
	if err := json.Unmarshal(raw, &opened); err != nil {
		j.t.Fatalf("%s: window.open arguments: %v", run, err)
	}
	u, err := url.Parse(opened.URL)
	if err != nil {
		j.t.Fatalf("%s: connect URL: %v", run, err)
	}
	frag, _ := url.ParseQuery(u.Fragment)
	wantPath := "/remote-desktop/vnc/" + strconv.Itoa(aliceID) + "/vnc.html"
	switch {
	case opened.Target != "_blank" || opened.Features != "noopener":
		j.t.Errorf("%s: window.open(…, %q, %q): want a new tab without an opener", run, opened.Target, opened.Features)
	case u.Scheme+"://"+u.Host != j.Caddy.URL || u.Path != wantPath:
		j.t.Errorf("%s: Connect opens %s, want %s%s", run, redact(opened.URL), j.Caddy.URL, wantPath)
	case u.RawQuery != "" || frag.Get("password") == "" || frag.Get("autoconnect") != "1":
		j.t.Errorf("%s: Connect URL %s: want autoconnect and the password in the fragment, nothing in the query", run, redact(opened.URL))
	}
	return opened.URL
}

// connect opens the connect URL in a new tab of the player's browser context
// and checks the noVNC canvas: the desktop's size, and its pixels.
func (j *journey) connect(p *tab, connectURL string) *tab {
	j.t.Helper()
	desk := j.b.newTab("alice-desktop", p)
	// The desktop follows the window (resize=remote): give the window the
	// configured resolution, so that the canvas must have exactly it.
	desk.do("viewport", chromedp.EmulateViewport(int64(j.width), int64(j.height)))
	start := time.Now()
	if resp := desk.navigate(connectURL); resp.Status != 200 {
		desk.fail("GET %s: %d", redact(connectURL), resp.Status)
	}
	desk.waitJS("noVNC connected", `document.documentElement.classList.contains('noVNC_connected')`,
		`({classes: document.documentElement.className, status: (document.getElementById('noVNC_status') || {}).innerText})`, 30*time.Second)
	connected := time.Since(start)

	// Wait for a full frame: the canvas gets the framebuffer's size at once,
	// and its pixels as the updates arrive.
	var stats canvasStats
	var png []byte
	deadline := time.Now().Add(20 * time.Second)
	for {
		dataURL := eval[string](desk, `(() => { const c = document.querySelector('#noVNC_container canvas'); return c ? c.toDataURL('image/png') : ''; })()`)
		raw, img, err := decodeDataURL(dataURL)
		if err == nil {
			png, stats = raw, analyse(img)
			if stats.Width == j.width && stats.Height == j.height && stats.looksLikeDesktop() == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			if png != nil {
				j.shots.write("FAILED-desktop-canvas.png", png)
			}
			desk.fail("the noVNC canvas never showed the %dx%d desktop: %s (%v, %v)", j.width, j.height, stats, err, stats.looksLikeDesktop())
		}
		time.Sleep(250 * time.Millisecond)
	}
	pixels := time.Since(start)
	j.shots.write("desktop.png", png)
	j.shot(desk, "desktop")

	// The pixels came through Caddy's proxy: one websocket to the desktop's
	// /websockify, switched (101), carrying frames.
	var ws []wsRecord
	for range 20 { // frames are counted as they arrive
		if ws = desk.net.websockets("/remote-desktop/vnc/" + strconv.Itoa(aliceID) + "/websockify"); len(ws) == 1 && ws[0].FramesIn > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(ws) != 1 || ws[0].Status != 101 || ws[0].FramesIn == 0 || ws[0].Closed {
		j.t.Errorf("desktop websocket: want one open websocket through the proxy with frames, got %+v", ws)
	}
	j.timing("run 1: connect → noVNC connected in %s, full desktop drawn in %s (%s; websocket: %d frames, %d bytes in)",
		connected.Round(time.Millisecond), pixels.Round(time.Millisecond), stats, ws[0].FramesIn, ws[0].BytesIn)
	return desk
}

// extend clicks Extend and checks that the countdown grew by the extension.
func (j *journey) extend(p *tab) {
	j.t.Helper()
	countdown := `document.querySelector('[data-testid="countdown"]').innerText`
	start := time.Now()
	before := clockSeconds(j.t, eval[string](p, countdown))
	p.click("extend-button")
	p.waitJS("extension applied", fmt.Sprintf(`document.querySelector('[data-testid="extend-button"]').innerText === 'Extend (+%d min, %d left)'`,
		extensionDuration/60, maxExtensions-1), playerState+`.countdown + ' / ' + document.querySelector('[data-testid="extend-button"]').innerText`, 10*time.Second)
	after := clockSeconds(j.t, eval[string](p, countdown))
	// The countdown ticks on while we click; it shows whole seconds, updated
	// every second.
	elapsed := int(time.Since(start).Seconds())
	if grew := after - before; grew < extensionDuration-elapsed-2 || grew > extensionDuration+1 {
		j.t.Errorf("extend: countdown went from %ds to %ds (+%d) in %ds, want +%d", before, after, grew, elapsed, extensionDuration)
	}
	if got, want := eval[string](p, `document.getElementById('info-extensions').innerText`), fmt.Sprintf("1 of %d", maxExtensions); got != want {
		j.t.Errorf("extend: extensions used shows %q, want %q", got, want)
	}
	j.timing("run 1: extend: countdown %s → %s", clock(before), clock(after))
}

// destroy clicks Destroy (confirming), and checks the page, the hosts, the
// open desktop tab and the dashboard.
func (j *journey) destroy(p, admin, desk *tab) {
	j.t.Helper()
	session := j.sessionID(aliceID)
	start := time.Now()
	p.click("destroy-button")
	p.waitJS("ended notice", visible("idle-view")+` && `+visible("ended-notice")+
		` && document.querySelector('[data-testid="ended-notice"]').dataset.state === 'user'`, playerState, 15*time.Second)
	shown := time.Since(start)
	if c := eval[[]string](p, `window.__e2e.confirms`); len(c) != 1 || !strings.Contains(c[0], "Destroy your desktop") {
		j.t.Errorf("destroy: confirm dialogs %q, want one asking to destroy", c)
	}
	if got := eval[string](p, `document.getElementById('ended-title').innerText`); got != "You destroyed your desktop." {
		j.t.Errorf("destroy: the page says %q", got)
	}
	j.shot(p, "player-destroyed")
	gone := j.WaitSessionGone("destroy", session, 30*time.Second)

	// The open desktop connection is cut, and noVNC's reconnects get nowhere.
	wsPath := "/remote-desktop/vnc/" + strconv.Itoa(aliceID) + "/websockify"
	if len(desk.net.websockets(wsPath)) == 0 {
		j.t.Errorf("destroy: the desktop tab never opened a websocket to the desktop")
	}
	j.wsClosed(desk, "destroy: the desktop tab", wsPath)
	time.Sleep(500 * time.Millisecond)
	j.shot(desk, "desktop-after-destroy")
	if upgraded := upgradedTo(desk, wsPath); upgraded != 1 {
		j.t.Errorf("destroy: %d websockets to the desktop were switched, want only the first: %+v", upgraded, desk.net.websockets(wsPath))
	}
	desk.close()

	admin.waitJS("session_destroyed event", eventSeen("session_destroyed", aliceID), `window.__e2e.events`, 10*time.Second)
	j.timing("run 1: destroy → ended notice in %s, container %s", shown.Round(time.Millisecond), gone)
}

// bobIsRefused opens Alice's desktop URL as Bob, in a browser context of his
// own: the page is a 403 error page, noVNC never loads, and a websocket to
// Alice's desktop is refused too.
func (j *journey) bobIsRefused(connectURL string) {
	j.t.Helper()
	bob := j.b.newContext("bob")
	bob.setCookie(j.Caddy.URL, "session", j.Login(bobID))
	bob.do("viewport", chromedp.EmulateViewport(pageWidth, pageHeight))
	resp := bob.navigate(connectURL)
	body := eval[string](bob, `document.body.innerText`)
	if resp.Status != 403 || resp.MimeType != "text/html" || !strings.Contains(body, "that desktop is not yours") {
		bob.fail("Alice's desktop as Bob: %d %s %q, want a 403 page saying it is not his", resp.Status, resp.MimeType, body)
	}
	j.shot(bob, "bob-forbidden")

	// From Bob's own player page (same origin, so only his login decides),
	// a websocket to Alice's desktop.
	if resp := bob.navigate(j.Caddy.URL + "/remote-desktop"); resp.Status != 200 {
		bob.fail("Bob's player page: %d", resp.Status)
	}
	ctx, cancel := context.WithTimeout(bob.ctx, callTimeout)
	defer cancel()
	res, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](fmt.Sprintf(`new Promise(resolve => {
		const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/remote-desktop/vnc/%d/websockify', ['binary']);
		let opened = false, messages = 0;
		ws.onopen = () => { opened = true; };
		ws.onmessage = () => { messages++; };
		ws.onclose = (e) => resolve({opened, messages, code: e.code});
		setTimeout(() => { resolve({opened, messages, code: -1}); ws.close(); }, 10000);
	})`, aliceID), chromedp.EvalAwaitPromise))
	if err != nil {
		bob.fail("websocket attempt: %v", err)
	}
	if res["opened"] != false || res["messages"] != float64(0) || res["code"] == float64(-1) {
		j.t.Errorf("Bob's websocket to Alice's desktop: %v, want refused (never opened, closed)", res)
	}

	// Nothing of noVNC reached Bob: no file of it, no switched websocket.
	vnc := "/remote-desktop/vnc/" + strconv.Itoa(aliceID) + "/"
	for _, a := range bob.net.answered(vnc) {
		if !strings.HasSuffix(a, " 403") {
			j.t.Errorf("Bob got %s", a)
		}
	}
	ws := bob.net.websockets(vnc)
	if len(ws) != 1 {
		bob.fail("Bob's browser opened %d websockets to Alice's desktop, want 1 (the test's): %+v", len(ws), ws)
	}
	if ws[0].Status == 101 || ws[0].FramesIn > 0 {
		j.t.Errorf("Bob's websocket to Alice's desktop went through: %+v", ws[0])
	}
	if n := bob.net.count(vnc); n != 1 {
		j.t.Errorf("Bob's browser sent %d HTTP requests under %s, want 1 (the page; noVNC never loaded): %v", n, vnc, bob.net.answered(vnc))
	}
	j.timing("bob: Alice's desktop URL → %d %s; his websocket to it → %v, handshake answer %d", resp.Status, resp.MimeType, res, ws[0].Status)
	bob.close()
}
