package browser

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

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

// warmPlayerHooks records, on the player page's own clock, when Start was
// clicked (the click event's time stamp) and when the Ready view first
// showed with Connect enabled.
const warmPlayerHooks = `(() => {
	const w = window.__warm = {click: 0, ready: 0};
	const view = document.querySelector('[data-testid="ready-view"]');
	const connect = document.querySelector('[data-testid="connect-button"]');
	document.querySelector('[data-testid="start-button"]').addEventListener('click', (ev) => {
		w.click = performance.timeOrigin + ev.timeStamp;
		w.ready = 0;
	}, true);
	const check = () => {
		if (w.click && !w.ready && !view.hidden && !connect.disabled) w.ready = performance.timeOrigin + performance.now();
	};
	new MutationObserver(check).observe(document.body, {attributes: true, subtree: true, attributeFilter: ['hidden', 'disabled']});
	return true;
})()`

// warmDesktopHooks runs in the desktop tab before noVNC's scripts: every
// draw onto a canvas in the document (noVNC flips its back buffer onto the
// visible canvas) is recorded with its time and a copy of the canvas's
// pixels, so the test can find the first draw that shows the desktop.
const warmDesktopHooks = `(() => {
	const w = window.__warm = {frames: [], draws: 0, last: 0, marks: {}};
	const now = () => performance.now();
	const mark = (k) => { if (!(k in w.marks)) w.marks[k] = now(); };
	const WS = window.WebSocket;
	window.WebSocket = function (...args) {
		mark('websocket created');
		const ws = new WS(...args);
		ws.addEventListener('open', () => mark('websocket open'));
		ws.addEventListener('message', () => mark('first message'));
		return ws;
	};
	window.WebSocket.prototype = WS.prototype;
	Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
	document.addEventListener('DOMContentLoaded', () => mark('DOMContentLoaded'));
	new MutationObserver(() => {
		if (document.documentElement.classList.contains('noVNC_connected')) mark('noVNC connected');
	}).observe(document, {attributes: true, subtree: true, attributeFilter: ['class']}); // no <html> yet
	const hook = (name) => {
		const orig = CanvasRenderingContext2D.prototype[name];
		CanvasRenderingContext2D.prototype[name] = function (...args) {
			const r = orig.apply(this, args);
			const c = this.canvas;
			if (c.isConnected && c.width > 0 && c.height > 0) {
				w.draws++;
				w.last = performance.timeOrigin + performance.now();
				mark('first draw');
				if (w.frames.length < ` + "%d" + `) w.frames.push({t: w.last, img: this.getImageData(0, 0, c.width, c.height)});
			}
			return r;
		};
	};
	hook('drawImage');
	hook('putImageData');
})()`

// warmFramePNG is the PNG data URL of kept frame %d.
const warmFramePNG = `((i) => {
	const f = window.__warm.frames[i], c = document.createElement('canvas');
	c.width = f.img.width; c.height = f.img.height;
	c.getContext('2d').putImageData(f.img, 0, 0);
	return c.toDataURL('image/png');
})(%d)`

// TestWarmClaimToCanvas measures issue 13's browser figure: with one host
// keeping one warm desktop (the real desktop image), a player clicks Start
// and Connect, and the time from the click to the first noVNC frame that
// shows the desktop on the canvas is measured (median of 3 runs, each a
// warm claim, the pool refilled between them), logged against the issue's
// 500 ms and bounded by warmCanvasMax (see there).
//
// The figure is taken on the browser's clocks, in two parts that leave out
// only the test's own reaction (a player's hand moving to Connect): Start's
// click event → Ready view with Connect enabled, on the player page; and
// the desktop tab's navigation start → the first draw that passes the
// journey's desktop check (looksLikeDesktop), in that tab. The whole wall
// time, the test's reaction included, is logged beside it.
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

	var figures, walls, floors []time.Duration
	for run := 1; run <= warmCanvasRuns; run++ {
		j.WaitWarm([]string{host.IP}, 1, 1, 0, 3*time.Minute)
		figure, wall, floor := j.warmRun(run, host)
		figures, walls, floors = append(figures, figure), append(walls, wall), append(floors, floor)
	}
	median, floorMedian := slices.Clone(figures), slices.Clone(floors)
	slices.Sort(median)
	slices.Sort(floorMedian)
	verdict := "met"
	if median[len(median)/2] >= warmCanvasIssue {
		verdict = "MISSED on this machine (BENCHMARKS.md, Warm pool)"
	}
	m, f := median[len(median)/2], floorMedian[len(floorMedian)/2]
	t.Logf("FIGURE warm claim → canvas drawn: median %v of %v (wall time with the test's reaction: %v); issue 13's %v: %s; "+
		"same-run floor (the running desktop opened again, noVNC cached, nothing else running): median %v of %v, claim ÷ floor %.2f×",
		m.Round(time.Millisecond), roundAll(figures), roundAll(walls), warmCanvasIssue, verdict,
		f.Round(time.Millisecond), roundAll(floors), float64(m)/float64(f))
	if m := median[len(median)/2]; m >= bound {
		t.Errorf("warm claim → noVNC canvas drawn: median %v of %v, want < %v", m.Round(time.Millisecond), roundAll(figures), bound)
	}
	j.stop()
}

// newWarmJourney starts Caddy with the bed's first host alone, running the
// desktop image with `warm 1`, and a browser.
func newWarmJourney(t *testing.T, tb *testbed.Testbed) (*journey, testbed.Host) {
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
	c.Image = tb.DesktopImage
	c.HostLines = []string{"warm 1"}
	// The bed's container defaults, as the journey has them from hosts.yml.
	c.App = []string{"probe_interval 2s", "resolution " + d.Resolution, "memory_limit " + d.MemoryLimit,
		"shm_size " + d.ShmSize, fmt.Sprintf("initial_duration %d", initialDuration), "shutdown_policy destroy"}
	c.Identity = e2e.CTFdIdentity(ctfd, "1s", "")
	c.Respond = []string{"respond 404"}
	j.Start(c.String(), "")
	t.Logf("caddy on %s, instance %s, host %s with warm 1 (%s, %dx%d)", j.Caddy.URL, j.Instance, host.IP, tb.DesktopImage, width, height)
	j.WaitHostsHealthy(60 * time.Second)
	j.b = startBrowser(t, pageWidth, pageHeight, j.shots)
	return j, host
}

// warmRun is one warm claim: Start, Connect, the canvas; then destroy. It
// returns the figure (click → Ready, plus the desktop tab's navigation →
// desktop drawn) and the wall time from the click to that draw.
func (j *journey) warmRun(run int, host testbed.Host) (figure, wall, floor time.Duration) {
	j.t.Helper()
	name := fmt.Sprintf("warm run %d", run)
	p := j.openPlayer("alice", aliceID)
	defer p.close()
	eval[bool](p, warmPlayerHooks)
	// The desktop's tab exists before the click, as the player's browser
	// does; its hooks run before noVNC's scripts.
	desk := j.desktopTab(p)
	defer desk.close()

	// The page fetches noVNC's files ahead while the player has no
	// desktop; a player reads the page before clicking Start.
	p.waitJS("noVNC's files fetched ahead", `document.documentElement.dataset.viewerPrefetch === 'done'`,
		`document.documentElement.dataset.viewerPrefetch`, 60*time.Second)
	time.Sleep(playerReads)
	p.click("start-button")
	p.waitJS("ready view, Connect enabled", `window.__warm.ready > 0`, playerState, 30*time.Second)
	p.click("connect-button")
	p.waitJS("window.open called", `window.__e2e.opened.length === 1`, `window.__e2e.opened.length`, 5*time.Second)
	connectURL := eval[string](p, `window.__e2e.opened[0].url`)
	if resp := desk.navigate(connectURL); resp.Status != 200 {
		desk.fail("GET %s: %d", redact(connectURL), resp.Status)
	}
	drawn, frame, stats := j.firstDesktopDraw(desk)

	// The create request, on the player page's clock: from the click to
	// its start, its time at the server (request sent → first byte), and
	// from its end to the Ready view.
	createTiming := eval[string](p, `(() => {
		const e = performance.getEntriesByType('resource').filter(e => e.name.endsWith('/api/create')).pop();
		if (!e) return 'no create request seen';
		const click = window.__warm.click - performance.timeOrigin, ready = window.__warm.ready - performance.timeOrigin;
		return 'click → request ' + (e.startTime - click).toFixed(0) + ' ms, request → first byte ' +
			(e.responseStart - e.requestStart).toFixed(1) + ' ms, answer → Ready view ' + (ready - e.responseEnd).toFixed(0) + ' ms';
	})()`)
	clicked, ready := eval[float64](p, `window.__warm.click`), eval[float64](p, `window.__warm.ready`)
	navStart := eval[float64](desk, `performance.timeOrigin`)
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	toReady, toDrawn := ms(ready-clicked), ms(drawn-navStart)
	figure, wall = toReady+toDrawn, ms(drawn-clicked)

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
	j.timing("%s: click → canvas drawn %s (Start → Ready view %s: %s; desktop tab → first desktop draw %s, draw %d: %s; ms in the tab: %s); wall %s; stages %s",
		name, figure.Round(time.Millisecond), toReady.Round(time.Millisecond), createTiming, toDrawn.Round(time.Millisecond),
		frame, stats, marks(desk), wall.Round(time.Millisecond), strings.Join(stages, " → "))

	// The same run's floor: once the pool has refilled (nothing else
	// running), the same desktop opened again in a new tab, noVNC from the
	// cache: what this browser and machine take for a viewer that has
	// nothing to wait for.
	desk.close()
	j.WaitWarm([]string{host.IP}, 1, 1, 0, 3*time.Minute)
	again := j.desktopTab(p)
	defer again.close()
	if resp := again.navigate(connectURL); resp.Status != 200 {
		again.fail("GET %s again: %d", redact(connectURL), resp.Status)
	}
	drawnAgain, _, _ := j.firstDesktopDraw(again)
	floor = ms(drawnAgain - eval[float64](again, `performance.timeOrigin`))
	j.timing("%s: the same desktop opened again (floor): tab → first desktop draw %s; ms in the tab: %s", name, floor.Round(time.Millisecond), marks(again))

	// Destroy, and let the pool refill for the next run.
	id, _ := sess["id"].(string)
	if a := j.Req(aliceID, http.MethodPost, "/remote-desktop/api/destroy", "{}", nil); a.Code != http.StatusOK {
		j.t.Fatalf("%s: destroy: %d %s", name, a.Code, a.Raw)
	}
	j.WaitSessionGone(name, id, 60*time.Second)
	return figure, wall, floor
}

// desktopTab opens the player's desktop tab (before Connect, as the
// player's browser does) with the canvas hooks installed.
func (j *journey) desktopTab(p *tab) *tab {
	j.t.Helper()
	desk := j.b.newTab("alice-desktop", p)
	desk.do("viewport", chromedp.EmulateViewport(int64(j.width), int64(j.height)))
	ctx, cancel := context.WithTimeout(desk.ctx, callTimeout)
	_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: fmt.Sprintf(warmDesktopHooks, warmFramesKept)})
	cancel()
	if err != nil {
		desk.fail("install the canvas hooks: %v", err)
	}
	return desk
}

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

// marks lists what the desktop tab's hooks saw, in ms since its navigation
// started.
func marks(desk *tab) string {
	m := eval[map[string]float64](desk, `window.__warm.marks`)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return int(m[a] - m[b]) })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]))
	}
	// Where the page load went: its resources, the slowest first.
	res := eval[string](desk, `(() => {
		const r = performance.getEntriesByType('resource');
		const end = Math.max(0, ...r.map(e => e.responseEnd));
		const slow = [...r].sort((a, b) => b.duration - a.duration).slice(0, 3)
			.map(e => e.name.replace(/^.*\/(vnc\/\d+|novnc\/[0-9a-f]+)\//, '') + ' ' + e.duration.toFixed(0) + ' (from ' + e.startTime.toFixed(0) + ')');
		const cached = r.filter(e => e.transferSize === 0 && e.decodedBodySize > 0).length;
		const nav = performance.getEntriesByType('navigation')[0];
		const js = r.filter(e => e.name.endsWith('.js'));
		const jsEnd = Math.max(0, ...js.map(e => e.responseEnd)), jsStart = Math.min(...js.map(e => e.startTime));
		const navs = nav ? 'page response ' + nav.responseStart.toFixed(0) + '-' + nav.responseEnd.toFixed(0) + ', ' : '';
		return navs + js.length + ' scripts ' + jsStart.toFixed(0) + '-' + jsEnd.toFixed(0) + ', ' + r.length + ' resources (' + cached + ' from the cache), the last done at ' + end.toFixed(0) + '; slowest ' + slow.join(', ');
	})()`)
	return strings.Join(parts, ", ") + "; " + res
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
