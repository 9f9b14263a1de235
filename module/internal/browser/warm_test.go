package browser

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// envWarmCanvasMax sets the bound of TestWarmClaimToCanvas, in
// milliseconds (e.g. 500, the issue's figure, on a quiet machine).
const envWarmCanvasMax = "RD_WARM_CANVAS_MAX_MS"

// The issue's figure for Start → canvas drawn is 500 ms. It is a
// performance figure, reported in BENCHMARKS.md, not a pass/fail bound for
// a shared 2-core CI machine where Chromium alone takes seconds to start
// (brief: performance is measured, never a timed test that flakes). What
// the test asserts by default is that a warm claim draws the desktop at
// all, within a bound that only a broken claim (a cold start in disguise,
// a viewer that never connects) exceeds.
const (
	warmCanvasIssue = 500 * time.Millisecond
	warmCanvasMax   = 30 * time.Second
	warmCanvasRuns  = 3  // the median is asserted
	warmFramesKept  = 30 // canvas draws kept per run
	// playerReads is the pause between the player's page being loaded
	// (noVNC's files fetched, the desktop's tab open) and Start: a player
	// reads the page first, and the browser is done starting the tab.
	playerReads = time.Second
)

// warmPlayerHooks runs in the player's page before its scripts. It
// records, on the page's clock, when Start was clicked (the click event's
// time stamp) and when the Ready view first showed; and every draw onto a
// canvas in the document (noVNC flips its back buffer onto the visible
// canvas) with its time and a copy of the canvas's pixels, so that the test
// can find the first draw that shows the desktop; and when the desktop's
// websocket was created, opened and first answered; and what every RFB
// ClientCutText (message type 6) the page sends carries (cutHook).
const warmPlayerHooks = `(() => {
	const w = window.__warm = {click: 0, ready: 0, frames: [], draws: 0, last: 0, marks: {}, cut: []};
	const now = () => performance.timeOrigin + performance.now();
	const mark = (k) => { if (!(k in w.marks)) w.marks[k] = now(); };
	const cut = ` + cutHook + `;
	const WS = window.WebSocket;
	window.WebSocket = function (...args) {
		mark('websocket created');
		const ws = new WS(...args);
		ws.addEventListener('open', () => mark('websocket open'));
		ws.addEventListener('message', () => mark('first message'));
		const send = ws.send.bind(ws);
		ws.send = (d) => { cut(d); return send(d); };
		return ws;
	};
	window.WebSocket.prototype = WS.prototype;
	Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
	const hook = (name) => {
		const orig = CanvasRenderingContext2D.prototype[name];
		CanvasRenderingContext2D.prototype[name] = function (...args) {
			const r = orig.apply(this, args);
			const c = this.canvas;
			if (c.isConnected && c.width > 0 && c.height > 0) {
				w.draws++;
				w.last = now();
				mark('first draw');
				if (w.frames.length < ` + "%d" + `) w.frames.push({t: w.last, img: this.getImageData(0, 0, c.width, c.height)});
			}
			return r;
		};
	};
	hook('drawImage');
	hook('putImageData');
	document.addEventListener('DOMContentLoaded', () => {
		const view = document.querySelector('[data-testid="ready-view"]');
		document.querySelector('[data-testid="start-button"]').addEventListener('click', (ev) => {
			w.click = performance.timeOrigin + ev.timeStamp;
			w.ready = 0;
		}, true);
		new MutationObserver(() => {
			if (w.click && !w.ready && !view.hidden) { w.ready = now(); mark('Ready view'); }
		}).observe(document.body, {attributes: true, subtree: true, attributeFilter: ['hidden']});
	});
})()`

// warmReset forgets the draws and marks seen so far and returns the page's
// time.
const warmReset = `(() => {
	const w = window.__warm;
	w.frames = []; w.draws = 0; w.marks = {};
	return performance.timeOrigin + performance.now();
})()`

// warmFramePNG is the PNG data URL of kept frame %d.
const warmFramePNG = `((i) => {
	const f = window.__warm.frames[i], c = document.createElement('canvas');
	c.width = f.img.width; c.height = f.img.height;
	c.getContext('2d').putImageData(f.img, 0, 0);
	return c.toDataURL('image/png');
})(%d)`

// TestWarmClaimToCanvas measures issue 13's browser figure: with one host
// keeping one warm desktop (the real desktop image), a player whose page
// has loaded noVNC's client clicks Start, and the time from the click to
// the first frame on the page's canvas that shows the desktop is measured
// on the page's clock (median of 3 runs, each a warm claim, the pool
// refilled between them), logged against the issue's 500 ms and bounded by
// warmCanvasMax (see there).
//
// Each run also checks the viewer's life on the page: Open in a new tab
// closes its connection and offers "Show it here", which connects it again
// (timed the same way: the same run's floor, a desktop that is already
// running and nothing to wait for), and a destroyed desktop leaves the page
// idle with no connection open.
func TestWarmClaimToCanvas(t *testing.T) {
	requireChromium(t)
	tb := testbed.Load(t)
	bound := warmCanvasMax
	if v := os.Getenv(envWarmCanvasMax); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			t.Fatalf("%s=%q: want milliseconds", envWarmCanvasMax, v)
		}
		bound = time.Duration(ms) * time.Millisecond
		t.Logf("bound %v from %s", bound, envWarmCanvasMax)
	}
	j, host := newWarmJourney(t, tb)

	var figures, floors []time.Duration
	for run := 1; run <= warmCanvasRuns; run++ {
		j.WaitWarm([]string{host.IP}, 1, 1, 0, 3*time.Minute)
		figure, floor := j.warmRun(run, host)
		figures, floors = append(figures, figure), append(floors, floor)
	}
	median, floorMedian := slices.Clone(figures), slices.Clone(floors)
	slices.Sort(median)
	slices.Sort(floorMedian)
	m, f := median[len(median)/2], floorMedian[len(floorMedian)/2]
	verdict := "met"
	if m >= warmCanvasIssue {
		verdict = "MISSED on this machine (BENCHMARKS.md, Warm pool)"
	}
	t.Logf("FIGURE warm claim → canvas drawn on the player's page: median %v of %v; issue 13's %v: %s; "+
		"same-run floor (the running desktop shown again on the page, nothing else running): median %v of %v, claim ÷ floor %.2f×",
		m.Round(time.Millisecond), roundAll(figures), warmCanvasIssue, verdict,
		f.Round(time.Millisecond), roundAll(floors), float64(m)/float64(f))
	if m >= bound {
		t.Errorf("warm claim → noVNC canvas drawn: median %v of %v, want < %v", m.Round(time.Millisecond), roundAll(figures), bound)
	}
	j.stop()
}

// newWarmJourney starts Caddy with the bed's first host alone, running the
// desktop image with `warm 1`, and a browser.
func newWarmJourney(t *testing.T, tb *testbed.Testbed) (*journey, testbed.Host) {
	t.Helper()
	return newOneHostJourney(t, tb, tb.DesktopImage, "warm 1")
}

// newOneHostJourney starts Caddy with the bed's first host alone, running
// image with hostLines in its host block, and a browser.
func newOneHostJourney(t *testing.T, tb *testbed.Testbed, image string, hostLines ...string) (*journey, testbed.Host) {
	t.Helper()
	hosts, err := config.Load(tb.HostsFile)
	if err != nil {
		t.Fatalf("read the test bed's hosts file: %v", err)
	}
	d := hosts.ContainerDefaults
	width, height, err := config.ParseResolution(d.Resolution)
	if err != nil {
		t.Fatalf("%s: %v", tb.HostsFile, err)
	}
	one := *tb
	one.Hosts = tb.Hosts[:1]
	host := one.Hosts[0]
	sweepStale(t, host)

	ctfd := e2e.NewCTFd(t)
	ctfd.AddUser(e2e.User{ID: aliceID, Name: "alice", Email: "alice@example.com", Verified: true})
	j := &journey{System: e2e.NewSystem(t, &one, ctfd, newInstance()), t: t, width: width, height: height, shots: newShots(t)}
	c := j.Caddyfile()
	c.Image = image
	c.HostLines = hostLines
	// The bed's container defaults, as the journey has them from hosts.yml.
	c.App = []string{"probe_interval 2s", "resolution " + d.Resolution, "memory_limit " + d.MemoryLimit,
		"shm_size " + d.ShmSize, fmt.Sprintf("initial_duration %d", initialDuration), "shutdown_policy destroy"}
	c.Identity = e2e.CTFdIdentity(ctfd, "1s", "")
	c.Respond = []string{"respond 404"}
	j.Start(c.String(), "")
	t.Logf("caddy on %s, instance %s, host %s %v (%s, %dx%d)", j.Caddy.URL, j.Instance, host.IP, hostLines, image, width, height)
	j.WaitHostsHealthy(60 * time.Second)
	j.b = startBrowser(t, pageWidth, pageHeight, j.shots)
	return j, host
}

// warmRun is one warm claim: Start, the desktop drawn on the player's page;
// Open in a new tab and Show it here (the floor); then destroy. It returns
// the figure (Start's click → the first draw showing the desktop) and the
// floor (Show it here → the same).
func (j *journey) warmRun(run int, host testbed.Host) (figure, floor time.Duration) {
	j.t.Helper()
	name := fmt.Sprintf("warm run %d", run)
	p := j.openPlayer("alice", aliceID, fmt.Sprintf(warmPlayerHooks, warmFramesKept))
	defer p.close()
	wsPath := "/remote-desktop/vnc/" + strconv.Itoa(aliceID) + "/websockify"
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

	// The page fetches noVNC's files and loads its client while the player
	// has no desktop; a player reads the page before clicking Start.
	p.waitJS("noVNC's client loaded", `document.documentElement.dataset.viewer === 'ready'`,
		`document.documentElement.dataset.viewerPrefetch + ' / ' + document.documentElement.dataset.viewer`, 60*time.Second)
	time.Sleep(playerReads)
	p.click("start-button")
	drawn, frame, stats := j.firstDesktopDraw(p)
	clicked := eval[float64](p, `window.__warm.click`)
	figure = ms(drawn - clicked)
	p.waitJS("viewer connected", `document.getElementById('viewer').dataset.state === 'connected'`, viewerState, 10*time.Second)

	// The create request, on the page's clock: from the click to its
	// start, and its time at the server (request sent → first byte).
	createTiming := eval[string](p, `(() => {
		const e = performance.getEntriesByType('resource').filter(e => e.name.endsWith('/api/create')).pop();
		if (!e) return 'no create request seen';
		const click = window.__warm.click - performance.timeOrigin;
		return 'click → request ' + (e.startTime - click).toFixed(0) + ' ms, request → first byte ' +
			(e.responseStart - e.requestStart).toFixed(1) + ' ms, answer at ' + (e.responseEnd - click).toFixed(0) + ' ms';
	})()`)
	sess := j.Status(aliceID)
	var stages []string
	list, _ := sess["stages"].([]any)
	for _, s := range list {
		if m, ok := s.(map[string]any); ok {
			stages = append(stages, fmt.Sprint(m["state"]))
		}
	}
	if sess["host"] != host.IP || contains(stages, "starting") || !contains(stages, "ready") {
		j.t.Errorf("%s: session on %v with stages %v: want a warm claim on %s (ready, never starting)", name, sess["host"], stages, host.IP)
	}
	j.timing("%s: click → canvas drawn %s (draw %d: %s; %s; ms after the click: %s); stages %s",
		name, figure.Round(time.Millisecond), frame, stats, createTiming, marksSince(p, clicked), strings.Join(stages, " → "))
	if run == 1 {
		j.shot(p, "player-desktop")
		j.pasteToDesktop(p)
	}

	// Open in a new tab: the page lets go of the desktop and offers it back.
	p.click("connect-button")
	p.waitJS("window.open called", `window.__e2e.opened.length === 1`, `window.__e2e.opened.length`, 5*time.Second)
	p.waitJS("viewer away", `document.getElementById('viewer').dataset.state === 'away'`+` && `+visible("viewer-show"), viewerState, 5*time.Second)
	j.wsClosed(p, name+": opened in a new tab", wsPath)

	// The same run's floor: once the pool has refilled (nothing else
	// running), Show it here connects to the same running desktop.
	j.WaitWarm([]string{host.IP}, 1, 1, 0, 3*time.Minute)
	t0 := eval[float64](p, warmReset)
	p.click("viewer-show")
	drawnAgain, _, _ := j.firstDesktopDraw(p)
	floor = ms(drawnAgain - t0)
	j.timing("%s: shown again on the page (floor): click → canvas drawn %s; ms after the click: %s", name, floor.Round(time.Millisecond), marksSince(p, t0))

	// Destroy (as the admin would, from elsewhere): the page finds out from
	// its dropped connection, goes idle, and keeps nothing open.
	id, _ := sess["id"].(string)
	if a := j.Req(aliceID, http.MethodPost, "/remote-desktop/api/destroy", "{}", nil); a.Code != http.StatusOK {
		j.t.Fatalf("%s: destroy: %d %s", name, a.Code, a.Raw)
	}
	p.waitJS("idle after destroy", visible("idle-view")+` && document.getElementById('viewer').hidden`, viewerState, 15*time.Second)
	j.wsClosed(p, name+": destroyed", wsPath)
	if n := upgradedTo(p, wsPath); n != 2 {
		j.t.Errorf("%s: %d websockets to the desktop were switched, want 2 (the claim's, Show it here's): %+v", name, n, p.net.websockets(wsPath))
	}
	j.WaitSessionGone(name, id, 60*time.Second)
	return figure, floor
}

// viewerState describes the player page's viewer for failure messages.
const viewerState = `(() => { const v = document.getElementById('viewer'); return 'viewer ' + (v.hidden ? 'hidden' : 'shown') +
	', state ' + v.dataset.state + ', status "' + document.getElementById('viewer-status').textContent + '", view ' +
	[...document.querySelectorAll('section.card')].filter(e => !e.hidden).map(e => e.id).join(','); })()`

// firstDesktopDraw waits until noVNC draws the desktop and returns the
// time (epoch ms, the page's clock) of the first kept draw whose pixels
// pass looksLikeDesktop, its index and stats. Kept draws are converted
// only while the canvas is quiet, so that the test's work does not delay
// the draws it times.
func (j *journey) firstDesktopDraw(desk *tab) (float64, int, canvasStats) {
	j.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var stats canvasStats
	var last []byte
	analysed, lastDraws := 0, -1
	for {
		draws := eval[int](desk, `window.__warm.draws`)
		kept := eval[int](desk, `window.__warm.frames.length`)
		if draws == lastDraws || kept == warmFramesKept {
			for ; analysed < kept; analysed++ {
				raw, img, err := decodeDataURL(eval[string](desk, fmt.Sprintf(warmFramePNG, analysed)))
				if err != nil {
					desk.fail("frame %d: %v", analysed, err)
				}
				last, stats = raw, analyse(img)
				if stats.looksLikeDesktop() == nil {
					return eval[float64](desk, fmt.Sprintf(`window.__warm.frames[%d].t`, analysed)), analysed, stats
				}
			}
		}
		lastDraws = draws
		if kept == warmFramesKept && analysed == kept || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if last != nil {
		j.shots.write("FAILED-warm-canvas.png", last)
	}
	desk.fail("none of the %d draws kept showed the desktop: last %s (%v)", analysed, stats, stats.looksLikeDesktop())
	return 0, 0, stats
}

// marksSince lists what the page's hooks saw, in ms after t0 (the page's
// epoch ms).
func marksSince(p *tab, t0 float64) string {
	m := eval[map[string]float64](p, `window.__warm.marks`)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return int(m[a] - m[b]) })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]-t0))
	}
	return strings.Join(parts, ", ")
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
