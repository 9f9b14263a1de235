package browser

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// evilMarker is in everything rd-evil answers (testdata/images/evil).
const evilMarker = "EVIL-DESKTOP-MARKER"

// TestHostileDesktopOnThePlayerPage gives the player page's viewer a
// desktop whose websocket is the attacker's (rd-evil: a 101 with
// Set-Cookie, Refresh, Location, CSP and other hostile headers, then a
// text frame of JSON, then an echo) and checks that nothing of it reaches
// the page: no cookie, no navigation, no markup or title, the viewer never
// claims a connection, its retries stay slow, and Destroy still ends it all.
func TestHostileDesktopOnThePlayerPage(t *testing.T) {
	requireChromium(t)
	tb := testbed.Load(t)
	j, _ := newOneHostJourney(t, tb, tb.EvilImage)
	defer j.stop()
	p := j.openPlayer("alice", aliceID)
	defer p.close()
	page := eval[string](p, `location.href`)
	title := eval[string](p, `document.title`)
	p.waitJS("noVNC's client loaded", `document.documentElement.dataset.viewer === 'ready'`,
		`document.documentElement.dataset.viewerPrefetch + ' / ' + document.documentElement.dataset.viewer`, 60*time.Second)
	p.click("start-button")
	p.waitJS("ready view", visible("ready-view"), playerState, 90*time.Second)

	// The page's viewer reaches the attacker's websocket through the proxy.
	wsPath := "/remote-desktop/vnc/" + strconv.Itoa(aliceID) + "/websockify"
	deadline := time.Now().Add(15 * time.Second)
	for {
		ws := p.net.websockets(wsPath)
		if len(ws) > 0 && ws[0].Status == 101 && ws[0].FramesIn > 0 {
			break
		}
		if time.Now().After(deadline) {
			p.fail("the viewer's websocket never reached the desktop: %+v", ws)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Long enough for the viewer to give up on a handshake that never
	// comes (15 s, viewer.js) and try again.
	const watch = 20 * time.Second
	time.Sleep(watch)

	if got := eval[string](p, `location.href`); got != page {
		t.Errorf("the player page moved to %s (was %s)", got, page)
	}
	if got := eval[string](p, `document.title`); got != title {
		t.Errorf("the page's title became %q (was %q)", got, title)
	}
	if eval[bool](p, `document.documentElement.outerHTML.includes('`+evilMarker+`')`) {
		t.Errorf("the desktop's marker is in the player page's markup")
	}
	ctx, cancel := context.WithTimeout(p.ctx, callTimeout)
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{j.Caddy.URL + "/remote-desktop"}})
	cancel()
	if err != nil {
		p.fail("read the browser's cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name != "session" || strings.Contains(c.Value, evilMarker) {
			t.Errorf("cookie %s=%s for our origin: the desktop set it", c.Name, c.Value)
		}
	}
	if st := eval[string](p, `document.getElementById('viewer').dataset.state`); st == "connected" {
		t.Errorf("the viewer says connected to a desktop that never spoke RFB")
	}
	// A desktop that never finishes the handshake is let go and tried
	// again, with a back-off, not hammered.
	if n := len(p.net.websockets(wsPath)); n < 2 || n > 8 {
		t.Errorf("%d websockets to the desktop in %v: want 2 to 8 (one given up after 15 s, retried)", n, watch)
	}
	if !eval[bool](p, visible("ready-view")) {
		t.Errorf("the Ready view is gone: %s", eval[string](p, viewerState))
	}
	j.timing("hostile desktop: %d websockets in %v, viewer %s", len(p.net.websockets(wsPath)), watch, eval[string](p, viewerState))

	// Destroy from the page: it goes idle and keeps nothing open.
	p.click("destroy-button")
	p.waitJS("idle after destroy", visible("idle-view")+` && document.getElementById('viewer').hidden`, viewerState, 15*time.Second)
	j.wsClosed(p, "hostile desktop destroyed", wsPath)
}
