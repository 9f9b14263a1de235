package browser

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// stageLabels records every text the player page's stage label shows.
const stageLabels = `(() => {
	const seen = window.__labels = [];
	const label = document.querySelector('[data-testid="stage-label"]');
	const note = () => { const v = label.innerText; if (seen[seen.length - 1] !== v) seen.push(v); };
	note();
	new MutationObserver(note).observe(label, {childList: true, characterData: true, subtree: true});
	return true;
})()`

// navbar reads what the page's navbar shows, and whether the stylesheet is
// applied (the navbar has a background and the main column is centred).
const navbar = `({
	brand: (document.querySelector('.navbar-brand') || {}).innerText || '',
	links: [...document.querySelectorAll('[data-testid="nav-link"]')].map(a => a.innerText + ' ' + a.getAttribute('href')),
	title: document.title,
	styled: (() => {
		const nav = document.querySelector('.navbar'), main = document.querySelector('main');
		if (!nav || !main) return false;
		const bg = getComputedStyle(nav).backgroundColor;
		return bg !== 'rgba(0, 0, 0, 0)' && bg !== 'transparent' && main.getBoundingClientRect().left > 0;
	})(),
	message: (document.querySelector('[data-testid="message-text"]') || {}).innerText || '',
	body: document.body.innerText.slice(0, 200),
})`

type navbarView struct {
	Brand   string
	Links   []string
	Title   string
	Styled  bool
	Message string
	Body    string
}

// The pages look like the operator's CTF: brand and links from the config
// (or, unset, CTFd's own ctf_name, asked once); a non-admin opening /admin
// and a player opening another player's desktop get a styled HTML 403 in
// the player page's layout, not raw JSON; and a create on an idle cluster
// never shows a queue position.
func TestBrandLinksAndErrorPages(t *testing.T) {
	requireChromium(t)
	tb := testbed.Load(t)
	ctfd := e2e.NewCTFd(t)
	ctfd.AddUser(e2e.User{ID: aliceID, Name: "alice", Email: "alice@example.com", Verified: true})
	ctfd.AddUser(e2e.User{ID: bobID, Name: "bob", Email: "bob@example.com", Verified: true})
	ctfd.SetConfig("ctf_name", "Desk CTF from CTFd")
	j := &journey{System: e2e.NewSystem(t, tb, ctfd, newInstance()), t: t, shots: newShots(t)}
	c := j.Caddyfile()
	c.Image = tb.TinyImage
	c.App = []string{"probe_interval 2s", "shutdown_policy destroy"}
	c.Identity = e2e.CTFdIdentity(ctfd, "1s", "")
	c.Handler = []string{`brand "Hack The Desk"`, "links {\n\t\t\tTasks /tasks\n\t\t\tRules https://ctf.example.com/rules\n\t\t}"}
	c.Respond = []string{"respond 404"}
	c.Site2 = true
	j.Start(c.String(), "")
	j.b = startBrowser(t, pageWidth, pageHeight, j.shots)

	// Brand and links from the config on the player page.
	alice := j.openPlayer("alice", aliceID)
	nav := eval[navbarView](alice, navbar)
	wantLinks := []string{"Tasks /tasks", "Rules https://ctf.example.com/rules"}
	if nav.Brand != "Hack The Desk" || strings.Join(nav.Links, "|") != strings.Join(wantLinks, "|") ||
		!strings.Contains(nav.Title, "Hack The Desk") || !nav.Styled {
		t.Errorf("player page navbar %+v: want brand Hack The Desk, links %v, styled", nav, wantLinks)
	}
	j.shot(alice, "branded-player")

	// A player opening /admin: a styled 403 page.
	if resp := alice.navigate(j.Caddy.URL + "/remote-desktop/admin"); resp.Status != 403 || !strings.HasPrefix(resp.MimeType, "text/html") {
		t.Errorf("/admin as a player: %d %s, want a 403 HTML page", resp.Status, resp.MimeType)
	}
	nav = eval[navbarView](alice, navbar)
	if nav.Brand != "Hack The Desk" || !nav.Styled || !strings.Contains(nav.Message, "admins only") || strings.HasPrefix(nav.Body, "{") {
		t.Errorf("/admin as a player shows %+v: want the branded, styled page saying admins only", nav)
	}
	j.shot(alice, "admin-403")

	// Another player's desktop: the same layout.
	if resp := alice.navigate(j.Caddy.URL + "/remote-desktop/vnc/" + strconv.Itoa(bobID) + "/"); resp.Status != 403 || !strings.HasPrefix(resp.MimeType, "text/html") {
		t.Errorf("bob's desktop as alice: %d %s, want a 403 HTML page", resp.Status, resp.MimeType)
	}
	nav = eval[navbarView](alice, navbar)
	if nav.Brand != "Hack The Desk" || !nav.Styled || !strings.Contains(nav.Message, "not yours") || len(nav.Links) != 2 {
		t.Errorf("bob's desktop as alice shows %+v: want the branded, styled page saying it is not yours", nav)
	}
	j.shot(alice, "not-yours-403")

	// An idle cluster: Start never shows a queue position. Idle means every
	// host is in rotation: a create made while the start-up checks (and the
	// isolation proof) still run queues for a host, rightly.
	j.WaitHostsHealthy(2 * time.Minute)
	if resp := alice.navigate(j.Caddy.URL + "/remote-desktop"); resp.Status != 200 {
		t.Fatalf("player page: %d", resp.Status)
	}
	alice.waitJS("idle view", visible("idle-view"), playerState, 15*time.Second)
	eval[bool](alice, stageLabels)
	alice.click("start-button")
	alice.waitJS("ready view", visible("ready-view"), playerState, 90*time.Second)
	labels := eval[[]string](alice, `window.__labels`)
	for _, l := range labels {
		if strings.Contains(strings.ToLower(l), "position") {
			t.Errorf("an idle cluster's create showed %q (labels seen: %q)", l, labels)
		}
	}
	t.Logf("stage labels seen on an idle cluster: %q", labels)

	// Unset brand: CTFd's own name, asked once however many pages.
	for i := range 2 {
		p := j.b.newContext(fmt.Sprintf("ctfd-name-%d", i))
		p.setCookie(j.Caddy.URL, "session", j.Login(bobID))
		page := fmt.Sprintf("http://127.0.0.1:%d/remote-desktop", j.Caddy.Port2)
		if resp := p.navigate(page); resp.Status != 200 {
			t.Fatalf("GET %s: %d", page, resp.Status)
		}
		if nav := eval[navbarView](p, navbar); nav.Brand != "Desk CTF from CTFd" || len(nav.Links) != 2 || nav.Links[0] != "Challenges /challenges" {
			t.Errorf("without brand: navbar %+v, want CTFd's ctf_name and CTFd's links", nav)
		}
		p.close()
	}
	if n := ctfd.Count("/api/v1/configs/ctf_name"); n != 1 {
		t.Errorf("CTFd was asked for ctf_name %d times, want once", n)
	}
	if err := j.Caddy.Stop(); err != nil {
		t.Errorf("caddy did not stop cleanly: %v", err)
	}
}
