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

// TestHostileDesktopOnThePlayerPage gives the player page's viewer the
// attacker's desktop (rd-evil: its websocket's 101 carries Set-Cookie,
// Refresh, Location, CSP and other hostile headers; then it speaks RFB with
// a desktop name and a clipboard that are HTML with script in them, rings
// the bell, draws, and hangs up after a second; every fifth connection it
// never finishes the handshake) and checks that nothing of it reaches the
// page but pixels and the clipboard as text: no cookie, no navigation, no
// markup, no script, no title. The viewer retries ever more slowly (an
// exact count of websockets in 33 s) and gives up a handshake that never
// finishes after 15 s; Destroy still ends it all.
func TestHostileDesktopOnThePlayerPage(t *testing.T) {
	requireChromium(t)
	tb := testbed.Load(t)
	j, _ := newOneHostJourney(t, tb, tb.EvilImage)
	defer j.stop()
	p := j.openPlayer("alice", aliceID)
	defer p.close()
	page := eval[string](p, `location.href`)
	title := eval[string](p, `document.title`)
	images := eval[int](p, `document.images.length`)
	p.waitJS("noVNC's client loaded", `document.documentElement.dataset.viewer === 'ready'`,
		`document.documentElement.dataset.viewerPrefetch + ' / ' + document.documentElement.dataset.viewer`, 60*time.Second)
	p.click("start-button")
	p.waitJS("ready view", visible("ready-view"), playerState, 90*time.Second)

	// The desktop's clipboard arrives, as the clipboard box's text.
	p.waitJS("the desktop's clipboard in the box", `document.getElementById('viewer-clipboard-text').value.includes('`+evilMarker+` clipboard')`,
		viewerState, 20*time.Second)
	wsPath := "/remote-desktop/vnc/" + strconv.Itoa(aliceID) + "/websockify"
	ws := p.net.websockets(wsPath)
	if len(ws) == 0 || ws[0].Status != 101 {
		p.fail("the viewer's websocket never reached the desktop: %+v", ws)
	}
	// Four connections that drop after a second, retried after 0.5, 1, 2
	// and 4 s, then one that hangs until the viewer gives up at 15 s, and
	// the next 8 s after that: five in 33 s. A viewer that reset its
	// back-off on every connection would have opened more; one without
	// the handshake deadline would never have closed the fifth.
	const watch = 33 * time.Second
	time.Sleep(time.Until(ws[0].CreatedAt.Add(watch)))

	if got := eval[string](p, `location.href`); got != page {
		t.Errorf("the player page moved to %s (was %s)", got, page)
	}
	if got := eval[string](p, `document.title`); got != title {
		t.Errorf("the page's title became %q (was %q)", got, title)
	}
	if eval[bool](p, `document.documentElement.outerHTML.includes('`+evilMarker+`')`) {
		t.Errorf("the desktop's marker is in the player page's markup")
	}
	if got := eval[string](p, `String(window.__evil)`); got != "undefined" {
		t.Errorf("the desktop's script ran on the player page: window.__evil = %s", got)
	}
	if got := eval[int](p, `document.images.length`); got != images {
		t.Errorf("the page has %d images, had %d: the desktop's markup got in", got, images)
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
	ws = p.net.websockets(wsPath)
	var seen []string
	for _, w := range ws {
		lasted := "still open"
		if w.Closed {
			lasted = "for " + w.ClosedAt.Sub(w.CreatedAt).Round(100*time.Millisecond).String()
		}
		seen = append(seen, w.CreatedAt.Sub(ws[0].CreatedAt).Round(100*time.Millisecond).String()+" "+lasted+", "+strconv.Itoa(w.FramesIn)+" frames")
	}
	if len(ws) != 5 {
		t.Errorf("%d websockets to the desktop in %v, want 5 (four dropped, retried after 0.5, 1, 2, 4 s, a fifth given up after 15 s): %s",
			len(ws), watch, strings.Join(seen, "; "))
	} else {
		for i, w := range ws {
			switch {
			case !w.Closed:
				t.Errorf("websocket %d is still open: %s", i+1, seen[i])
			case i < 4 && w.FramesIn < 8:
				t.Errorf("websocket %d: %s, want the desktop's whole hostile RFB", i+1, seen[i])
			case i == 4 && (w.FramesIn != 1 || w.ClosedAt.Sub(w.CreatedAt) < 14*time.Second):
				t.Errorf("websocket %d: %s, want the greeting alone, closed by the viewer after 15 s", i+1, seen[i])
			}
		}
	}
	if !eval[bool](p, visible("ready-view")) {
		t.Errorf("the Ready view is gone: %s", eval[string](p, viewerState))
	}
	j.timing("hostile desktop: websockets (start, lasted, frames in): %s; viewer %s", strings.Join(seen, "; "), eval[string](p, viewerState))

	// Destroy from the page: it goes idle and keeps nothing open.
	p.click("destroy-button")
	p.waitJS("idle after destroy", visible("idle-view")+` && document.getElementById('viewer').hidden`, viewerState, 15*time.Second)
	j.wsClosed(p, "hostile desktop destroyed", wsPath)
}
