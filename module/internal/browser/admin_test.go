package browser

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

// adminHooks replaces window.confirm and records when each session row and
// each event item first appears, and which events the page had at load.
const adminHooks = `(() => {
	const e2e = window.__e2e = {marker: 'loaded-' + Date.now(), confirms: [], rows: {}, events: {}};
	window.confirm = (msg) => { e2e.confirms.push(String(msg)); return true; };
	const seen = () => {
		const now = Date.now();
		document.querySelectorAll('#sessions-body tr[data-user-id]').forEach(r => {
			const k = r.getAttribute('data-user-id');
			if (!(k in e2e.rows)) e2e.rows[k] = now;
		});
		document.querySelectorAll('[data-testid="event-item"]').forEach(li => {
			const id = li.getAttribute('data-event-id');
			if (!(id in e2e.events)) e2e.events[id] = {
				type: li.getAttribute('data-event-type'),
				who: li.querySelector('.event-who').textContent,
				at: now,
			};
		});
	};
	seen();
	e2e.initial = Object.keys(e2e.events);
	new MutationObserver(seen).observe(document.body, {childList: true, subtree: true});
	return e2e.marker;
})()`

// openAdmin opens the dashboard in a browser context of its own, logged in
// as CTFd's admin, and waits until its event stream is live.
func (j *journey) openAdmin() *tab {
	j.t.Helper()
	admin := j.b.newContext("admin")
	admin.setCookie(j.Caddy.URL, "session", j.Login(e2e.AdminUserID))
	admin.do("viewport", chromedp.EmulateViewport(pageWidth, pageHeight))
	page := j.Caddy.URL + "/remote-desktop/admin"
	if resp := admin.navigate(page); resp.Status != 200 {
		admin.fail("GET %s: %d", page, resp.Status)
	}
	d := admin.waitJS("event stream live", `document.querySelector('[data-testid="event-stream-state"]').dataset.state === 'live'`,
		`document.querySelector('[data-testid="event-stream-state"]').innerText`, 15*time.Second)
	admin.waitJS("hosts listed", fmt.Sprintf(`document.querySelectorAll('#hosts-body tr[data-host]').length === %d`, len(j.Bed.Hosts)),
		`document.querySelector('#hosts-body').innerText`, 15*time.Second)
	eval[string](admin, adminHooks)
	j.timing("admin: dashboard live (event stream open) %s after load", d.Round(time.Millisecond))
	j.shot(admin, "admin-before")
	return admin
}

// eventSeen is a JavaScript test that the dashboard's feed shows an event
// of that type for user id, added after the page loaded.
func eventSeen(typ string, id int) string {
	return fmt.Sprintf(`Object.entries(window.__e2e.events).some(([id, e]) =>
		!window.__e2e.initial.includes(id) && e.type === %q && e.who.split(' · ').includes('user %d'))`, typ, id)
}

// rowState is a JavaScript expression for the state shown in a user's
// session row, empty when there is no row.
func rowState(id int) string {
	return fmt.Sprintf(`((document.querySelector('#sessions-body tr[data-user-id="%d"] [data-testid="session-state"]') || {}).innerText || '')`, id)
}

// checkAdminSawSession checks that the dashboard, loaded before Alice
// started, shows her session and its events without a reload: the events
// arrived over the one SSE stream it opened.
func (j *journey) checkAdminSawSession(admin *tab) {
	j.t.Helper()
	for _, typ := range []string{"session_created", "session_ready"} {
		admin.waitJS(typ+" in the event feed", eventSeen(typ, aliceID), `window.__e2e.events`, 10*time.Second)
	}
	admin.waitJS("alice's session row ready", rowState(aliceID)+` === 'ready'`, `document.querySelector('#sessions-body').innerText`, 10*time.Second)
	// The timer starts with the player's first poll once ready, which is no
	// event: the dashboard's next periodic refresh (every 5 s) shows it.
	admin.waitJS("alice's countdown on the dashboard", fmt.Sprintf(`/^\d+:\d\d$/.test(document.querySelector('#sessions-body tr[data-user-id="%d"] [data-testid="session-countdown"]').innerText)`, aliceID),
		`document.querySelector('#sessions-body').innerText`, 10*time.Second)
	if got := eval[string](admin, fmt.Sprintf(`document.querySelector('#sessions-body tr[data-user-id="%d"] [data-testid="session-user"]').innerText`, aliceID)); got != "alice" {
		j.t.Errorf("admin: session row names %q, want alice", got)
	}
	var seen struct {
		Marker  string
		Initial []string
		Rows    map[string]int64
		Events  map[string]struct {
			Type, Who string
			At        int64
		}
	}
	if err := json.Unmarshal(eval[[]byte](admin, `window.__e2e`), &seen); err != nil {
		j.t.Fatalf("admin: %v", err)
	}
	// The first event about Alice (session_queued) reached the feed, and
	// the dashboard refreshed its table on it.
	var first int64
	for id, e := range seen.Events {
		if !contains(seen.Initial, id) && strings.Contains(e.Who, "user "+strconv.Itoa(aliceID)) && (first == 0 || e.At < first) {
			first = e.At
		}
	}
	page := j.Caddy.URL + "/remote-desktop/admin"
	loads := admin.net.countExact(page)
	recent := admin.net.count("/admin/api/events/recent")
	streams := admin.net.count("/admin/api/events/stream")
	if seen.Marker == "" || loads != 1 || recent != 1 || streams != 1 {
		j.t.Errorf("admin: page loads %d, recent-events fetches %d, event streams %d: want 1 each (live updates, no reload or reconnect)", loads, recent, streams)
	}
	j.timing("admin: alice's row appeared %d ms after her first event reached the feed (both live: one page load, one SSE stream)",
		seen.Rows[strconv.Itoa(aliceID)]-first)
}

// adminKills kills the player's session from the dashboard and checks that
// the player's page reports it.
func (j *journey) adminKills(admin, p *tab) {
	j.t.Helper()
	admin.waitJS("alice's second session row ready", rowState(aliceID)+` === 'ready'`, `document.querySelector('#sessions-body').innerText`, 15*time.Second)
	j.shot(admin, "admin-before-kill")
	session := j.sessionID(aliceID)
	start := time.Now()
	admin.do("kill", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#sessions-body tr[data-user-id="%d"] [data-testid="kill-button"]`, aliceID)), chromedp.NodeVisible))
	if c := eval[[]string](admin, `window.__e2e.confirms`); len(c) != 1 || !strings.Contains(c[0], "Kill the desktop of alice") {
		j.t.Errorf("admin: confirm dialogs %q, want one asking to kill alice's desktop", c)
	}
	admin.waitJS("session row gone", rowState(aliceID)+` === '' || `+rowState(aliceID)+` === 'destroyed'`,
		`document.querySelector('#sessions-body').innerText`, 15*time.Second)
	j.shot(admin, "admin-killed")

	// The player's page polls its status every 5 s.
	p.waitJS("player sees the kill", visible("ended-notice")+
		` && document.querySelector('[data-testid="ended-notice"]').dataset.state === 'destroyed'`, playerState, 15*time.Second)
	seen := time.Since(start)
	if got := eval[string](p, `document.querySelector('[data-testid="ended-notice"]').innerText`); !strings.Contains(got, "Your desktop was stopped.") || !strings.Contains(got, "killed by admin") {
		j.t.Errorf("player after the kill: the notice says %q, want it stopped, killed by an admin", got)
	}
	j.shot(p, "player-killed")
	gone := j.WaitSessionGone("kill", session, 30*time.Second)
	j.timing("run 2: admin kill → player's page shows it ended in %s; container %s", seen.Round(time.Millisecond), gone)
}
