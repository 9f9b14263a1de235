package browser

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// chromiumPath is Debian's chromium, which testdata/browser/ensure-chromium.sh
// installs.
const chromiumPath = "/usr/bin/chromium"

// envScreenshots names the directory screenshots are written to.
const envScreenshots = "RD_SCREENSHOTS"

// callTimeout bounds one protocol round trip (a click, an evaluation, a
// screenshot); waits for the product have their own timeouts.
const callTimeout = 30 * time.Second

// requireChromium skips the test when there is no Chromium, or fails it
// under RD_TESTBED_REQUIRED=1: a run that must exercise the browser can
// never pass by skipping it.
func requireChromium(t *testing.T) {
	t.Helper()
	fi, err := os.Stat(chromiumPath)
	if err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return
	}
	msg := fmt.Sprintf("\n*** NO BROWSER: %s is missing (%v). Browser end-to-end test NOT RUN. ***\n"+
		"*** Install it with testdata/browser/ensure-chromium.sh; %s=1 makes this a failure. ***",
		chromiumPath, err, testbed.EnvRequired)
	if os.Getenv(testbed.EnvRequired) == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// browser is one Chromium process. Its tabs live in separate browser
// contexts (separate cookie jars) unless opened as a child of another tab.
type browser struct {
	t     *testing.T
	root  context.Context // the first tab; never navigated
	shots *shots
	log   *safeLog
}

// startBrowser runs Chromium headless with a fresh profile. Its network is
// confined: every host name resolves to nothing except 127.0.0.1, so the
// browser can reach the Caddy under test and nothing else.
func startBrowser(t *testing.T, width, height int, shots *shots) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox, // root in a container
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	)
	log := &safeLog{t: t}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	root, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(log.printf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the process to exit
		log.close()
	})
	start := time.Now()
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	version, err := chromedp.Run(root, chromedp.Evaluate[string](`navigator.userAgent`))
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	t.Logf("browser: %s up in %s (%s)", chromiumPath, time.Since(start).Round(time.Millisecond), version)
	return &browser{t: t, root: root, shots: shots, log: log}
}

// safeLog passes chromedp's error messages on to the test log while the test
// runs, and drops them afterwards (logging after a test ends panics).
type safeLog struct {
	mu     sync.Mutex
	t      *testing.T
	closed bool
}

func (l *safeLog) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.t.Logf("chromedp: "+format, args...)
	}
}

func (l *safeLog) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
}

// tab is one browser tab, used from the test's goroutine only.
type tab struct {
	b    *browser
	t    *testing.T
	name string
	ctx  context.Context
	net  *netLog
}

// newContext opens a tab in a browser context of its own: its own cookies,
// storage and cache, as a separate browser would have.
func (b *browser) newContext(name string) *tab {
	return b.open(name, b.root, chromedp.WithNewBrowserContext())
}

// newTab opens another tab in the same browser context as parent (the same
// cookies), as a link opened in a new tab would be.
func (b *browser) newTab(name string, parent *tab) *tab {
	return b.open(name, parent.ctx)
}

func (b *browser) open(name string, parent context.Context, opts ...chromedp.ContextOption) *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(parent, opts...)
	b.t.Cleanup(cancel)
	tb := &tab{b: b, t: b.t, name: name, ctx: ctx, net: &netLog{}}
	if err := chromedp.Do(ctx); err != nil { // creates the target
		b.t.Fatalf("%s: open tab: %v", name, err)
	}
	if err := chromedp.Listen(ctx, tb.net.record); err != nil {
		b.t.Fatalf("%s: listen: %v", name, err)
	}
	return tb
}

// close closes the tab (its page, and any connection it holds).
func (tb *tab) close() {
	if err := chromedp.Cancel(tb.ctx); err != nil && !errors.Is(err, context.Canceled) {
		tb.t.Logf("%s: close tab: %v", tb.name, err)
	}
}

// setCookie stores a cookie for url's host in the tab's browser context.
func (tb *tab) setCookie(url, name, value string) {
	tb.t.Helper()
	httpOnly := true
	ctx, cancel := context.WithTimeout(tb.ctx, callTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{
		Name: name, Value: value, URL: url, Path: "/", HTTPOnly: &httpOnly, SameSite: network.CookieSameSiteLax,
	}); err != nil {
		tb.t.Fatalf("%s: set cookie %s: %v", tb.name, name, err)
	}
}

// do runs actions, failing the test (with a screenshot of the tab) if one
// fails.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, callTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.fail("%s: %v", what, err)
	}
}

// beforeScripts has src run in every document the tab loads from now on,
// before the document's own scripts.
func (tb *tab) beforeScripts(src string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, callTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument,
		page.AddScriptToEvaluateOnNewDocumentParams{Source: src}); err != nil {
		tb.fail("install a script before the page's: %v", err)
	}
}

// navigate loads url and returns the status of the document's response.
func (tb *tab) navigate(url string) *network.Response {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, callTimeout)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		tb.fail("navigate to %s: %v", redact(url), err)
	}
	return resp
}

// click clicks the element with that data-testid.
func (tb *tab) click(testid string) {
	tb.t.Helper()
	tb.do("click "+testid, chromedp.Click(chromedp.CSS(testidSel(testid)), chromedp.NodeVisible))
}

func testidSel(testid string) string { return `[data-testid="` + testid + `"]` }

// eval evaluates a JavaScript expression in the tab and decodes its value.
func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, callTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		tb.fail("evaluate %.80q: %v", js, err)
	}
	return v
}

// waitJS evaluates js every 100 ms until it is true, failing the test after
// timeout with what js last said. describe (a JavaScript expression) is
// evaluated on failure to say what the page showed instead.
func (tb *tab) waitJS(what, js, describe string, timeout time.Duration) time.Duration {
	tb.t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(tb.ctx, callTimeout)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		cancel()
		if err == nil && ok {
			return time.Since(start)
		}
		lastErr = err
		if time.Now().After(deadline) {
			seen := ""
			if describe != "" {
				ctx, cancel := context.WithTimeout(tb.ctx, callTimeout)
				raw, derr := chromedp.Run(ctx, chromedp.Evaluate[[]byte](describe))
				cancel()
				seen = fmt.Sprintf("; the page shows %s (%v)", raw, derr)
			}
			tb.fail("wait %s: not within %s (last error: %v)%s", what, timeout, lastErr, seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fail takes a screenshot of the tab for the post-mortem and fails the test.
func (tb *tab) fail(format string, args ...any) {
	tb.t.Helper()
	msg := fmt.Sprintf(format, args...)
	if path := tb.b.shots.saveTab(tb, "FAILED-"+tb.name); path != "" {
		msg += "\n(screenshot of " + tb.name + ": " + path + ")"
	}
	tb.t.Fatalf("%s: %s", tb.name, msg)
}

// shots writes numbered screenshots to one directory.
type shots struct {
	t   *testing.T
	dir string
	n   int
}

// newShots uses $RD_SCREENSHOTS, or out/screenshots in the repository,
// removing the numbered screenshots a previous run left there.
func newShots(t *testing.T) *shots {
	t.Helper()
	dir := os.Getenv(envScreenshots)
	if dir == "" {
		root, err := testbed.RepoRoot()
		if err != nil {
			t.Fatalf("screenshots: %v", err)
		}
		dir = filepath.Join(root, "out", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("screenshots: %v", err)
	}
	// The previous run's numbered and failure screenshots would mix with
	// this run's.
	for _, pattern := range []string{"[0-9][0-9]-*.png", "FAILED-*.png"} {
		old, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, f := range old {
			_ = os.Remove(f)
		}
	}
	return &shots{t: t, dir: dir}
}

// take saves a screenshot of the whole page as NN-name.png and returns its
// path.
func (s *shots) take(tb *tab, name string) string {
	s.t.Helper()
	s.n++
	path := s.saveTab(tb, fmt.Sprintf("%02d-%s", s.n, name))
	if path == "" {
		s.t.Fatalf("%s: screenshot %s failed", tb.name, name)
	}
	return path
}

func (s *shots) saveTab(tb *tab, name string) string {
	ctx, cancel := context.WithTimeout(tb.ctx, callTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		s.t.Logf("%s: screenshot %s: %v", tb.name, name, err)
		return ""
	}
	return s.write(name+".png", png)
}

// write stores data under name in the directory and returns its path.
func (s *shots) write(name string, data []byte) string {
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		s.t.Logf("screenshots: %v", err)
		return ""
	}
	return path
}

// copy copies the screenshot at path to name in the same directory.
func (s *shots) copy(path, name string) string {
	s.t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		s.t.Fatalf("screenshots: %v", err)
	}
	return s.write(name, data)
}

// netLog keeps what a tab's network did: documents and fetches with their
// answers, and websockets with their handshakes, frames and closing.
type netLog struct {
	mu       sync.Mutex
	requests []string                        // URL of every request, in order
	statuses map[network.RequestID]int64     // answers by request
	urls     map[network.RequestID]string    // request URLs by id
	ws       map[network.RequestID]*wsRecord // websockets by id
}

type wsRecord struct {
	URL       string
	Status    int64 // handshake answer; 0 if none
	FramesIn  int
	BytesIn   int
	Closed    bool
	Failed    string
	CreatedAt time.Time
	ClosedAt  time.Time
}

func (n *netLog) record(ev any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.statuses == nil {
		n.statuses = map[network.RequestID]int64{}
		n.urls = map[network.RequestID]string{}
		n.ws = map[network.RequestID]*wsRecord{}
	}
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		n.requests = append(n.requests, ev.Request.URL)
		n.urls[ev.RequestID] = ev.Request.URL
	case *network.EventResponseReceived:
		n.statuses[ev.RequestID] = ev.Response.Status
	case *network.EventWebSocketCreated:
		n.ws[ev.RequestID] = &wsRecord{URL: ev.URL, CreatedAt: time.Now()}
	case *network.EventWebSocketHandshakeResponseReceived:
		if w := n.ws[ev.RequestID]; w != nil && ev.Response != nil {
			w.Status = ev.Response.Status
		}
	case *network.EventWebSocketFrameReceived:
		if w := n.ws[ev.RequestID]; w != nil {
			w.FramesIn++
			if ev.Response != nil {
				w.BytesIn += len(ev.Response.PayloadData)
			}
		}
	case *network.EventWebSocketFrameError:
		if w := n.ws[ev.RequestID]; w != nil {
			w.Failed = ev.ErrorMessage
		}
	case *network.EventWebSocketClosed:
		if w := n.ws[ev.RequestID]; w != nil {
			w.Closed, w.ClosedAt = true, time.Now()
		}
	}
}

// websockets returns a copy of every websocket whose URL contains sub,
// in the order they were created.
func (n *netLog) websockets(sub string) []wsRecord {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []wsRecord
	for _, w := range n.ws {
		if strings.Contains(w.URL, sub) {
			out = append(out, *w)
		}
	}
	slices.SortFunc(out, func(a, b wsRecord) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

// wsClosed waits until no websocket from the tab to path is open.
func (j *journey) wsClosed(p *tab, what, path string) {
	j.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		open := 0
		for _, w := range p.net.websockets(path) {
			if w.Status == 101 && !w.Closed {
				open++
			}
		}
		if open == 0 {
			return
		}
		if time.Now().After(deadline) {
			j.t.Errorf("%s: %d websockets to the desktop still open 10s later: %+v", what, open, p.net.websockets(path))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// upgradedTo counts the tab's websockets to path that were switched.
func upgradedTo(p *tab, path string) int {
	n := 0
	for _, w := range p.net.websockets(path) {
		if w.Status == 101 {
			n++
		}
	}
	return n
}

// count says how many requests went to URLs containing sub.
func (n *netLog) count(sub string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, u := range n.requests {
		if strings.Contains(u, sub) {
			c++
		}
	}
	return c
}

// countExact says how many requests went to exactly url.
func (n *netLog) countExact(url string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, u := range n.requests {
		if u == url {
			c++
		}
	}
	return c
}

// answered returns "URL status" for every answered request whose URL
// contains sub.
func (n *netLog) answered(sub string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for id, st := range n.statuses {
		if u := n.urls[id]; strings.Contains(u, sub) {
			out = append(out, fmt.Sprintf("%s %d", redact(u), st))
		}
	}
	return out
}

// redact hides a URL's fragment, where the VNC password travels.
func redact(u string) string {
	if i := strings.IndexByte(u, '#'); i >= 0 {
		return u[:i] + "#…"
	}
	return u
}
