package browser

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// CTFd accounts of the journey (the stand-in's admin is e2e.AdminUserID).
const (
	aliceID = 2
	bobID   = 3
)

// Session timing the Caddyfile sets, in seconds.
const (
	initialDuration   = 600
	extensionDuration = 300
	maxExtensions     = 3 // the test bed's hosts.yml
)

// Page size for the player page and the dashboard.
const pageWidth, pageHeight = 1280, 800

// instancePrefix starts the instance name of every run of this test.
const instancePrefix = "browser-e2e-"

// journey is the system under test (e2e.System) and the browser driving
// it.
type journey struct {
	*e2e.System
	t       *testing.T
	width   int // the desktop's resolution (hosts.yml container_defaults)
	height  int
	b       *browser
	shots   *shots
	timings []string
}

// TestPlayerJourney drives a player's whole journey in a real browser
// against the real Caddy binary and the test bed's hosts, with the real
// desktop image: start (the progress bar walking the stages), connect (the
// noVNC canvas showing the desktop's pixels through the proxy), extend,
// destroy; the admin dashboard following live in another browser context
// (sessions and events over SSE, no reload) and killing a second session,
// which the player's page then reports; and a second player who has the
// desktop's URL but is refused, with no VNC traffic.
func TestPlayerJourney(t *testing.T) {
	requireChromium(t)
	tb := testbed.Load(t)
	start := time.Now()
	j := newJourney(t, tb)

	admin := j.openAdmin()
	alice := j.openPlayer("alice", aliceID)

	// 1. Alice starts a desktop; the progress bar walks the stages.
	j.shot(alice, "player-idle")
	connectURL := j.startAndWait(alice, "run 1")
	j.shot(alice, "player-ready")

	// 2. The dashboard showed it appear, live.
	j.checkAdminSawSession(admin)
	adminShot := j.shot(admin, "admin-live")

	// 3. Connect: noVNC in a new tab shows the desktop, through the proxy.
	desktop := j.connect(alice, connectURL)

	// 4. Bob has the URL but gets nothing.
	j.bobIsRefused(connectURL)

	// 5. Extend, then destroy.
	j.extend(alice)
	playerShot := j.shot(alice, "player-extended")
	j.destroy(alice, admin, desktop)

	// 6. Second run: the admin kills it from the dashboard.
	j.startAndWait(alice, "run 2")
	j.adminKills(admin, alice)

	j.shots.copy(playerShot, "player.png")
	j.shots.copy(adminShot, "admin.png")
	// Stop with the dashboard's event stream still open: the stream must
	// end as the server shuts down, not hold it.
	j.stop()
	admin.close()
	alice.close()
	t.Logf("journey done in %s; timings:\n  %s\nscreenshots in %s (player.png, admin.png, desktop.png)",
		time.Since(start).Round(time.Millisecond), strings.Join(j.timings, "\n  "), j.shots.dir)
}

func newJourney(t *testing.T, tb *testbed.Testbed) *journey {
	t.Helper()
	hosts, err := config.Load(tb.HostsFile)
	if err != nil {
		t.Fatalf("read the test bed's hosts file: %v", err)
	}
	width, height, err := config.ParseResolution(hosts.ContainerDefaults.Resolution)
	if err != nil {
		t.Fatalf("%s: %v", tb.HostsFile, err)
	}
	for _, h := range tb.Hosts {
		sweepStale(t, h)
	}

	ctfd := e2e.NewCTFd(t)
	ctfd.AddUser(e2e.User{ID: aliceID, Name: "alice", Email: "alice@example.com", Verified: true})
	ctfd.AddUser(e2e.User{ID: bobID, Name: "bob", Email: "bob@example.com", Verified: true})

	j := &journey{System: e2e.NewSystem(t, tb, ctfd, newInstance()), t: t, width: width, height: height, shots: newShots(t)}
	c := j.Caddyfile()
	c.HostsFile = tb.HostsFile
	c.App = []string{"probe_interval 2s", fmt.Sprintf("initial_duration %d", initialDuration),
		fmt.Sprintf("extension_duration %d", extensionDuration), "shutdown_policy destroy"}
	c.Identity = e2e.CTFdIdentity(ctfd, "1s", "")
	c.Respond = []string{"respond 404"}
	j.Start(c.String(), "")
	t.Logf("caddy on %s, instance %s, desktop %dx%d (%s)", j.Caddy.URL, j.Instance, width, height, tb.HostsFile)

	j.b = startBrowser(t, pageWidth, pageHeight, j.shots)
	return j
}

// newInstance is the instance name of a run: instancePrefix and a random
// suffix.
func newInstance() string {
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	return instancePrefix + hex.EncodeToString(suffix[:])
}

// stop stops Caddy (SIGTERM), which must exit cleanly; with
// shutdown_policy destroy it would destroy sessions still running.
func (j *journey) stop() {
	j.t.Helper()
	if err := j.Caddy.Stop(); err != nil {
		j.t.Errorf("caddy did not stop cleanly: %v", err)
	}
	// Both sessions ended before; what could be left is a half-made
	// container of a creation whose host failed (removed by the reaper
	// after orphan_grace, or by cleanup here).
	if n := j.containers(); n != 0 {
		j.t.Logf("%d containers of instance %s left after Caddy stopped (cleanup removes them)", n, j.Instance)
	}
}

// sweepStale removes containers that earlier runs of this test left behind
// (a run killed before its cleanup) once they are an hour old.
func sweepStale(t *testing.T, h testbed.Host) {
	out, err := testbed.TryExec(h, "docker", "ps", "-a", "--filter", "label="+e2e.LabelInstance,
		"--format", `{{.ID}}|{{.Label "`+e2e.LabelInstance+`"}}|{{.CreatedAt}}`)
	if err != nil {
		t.Logf("sweep %s: %v", h.Name, err)
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		parts := strings.SplitN(line, "|", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[1], instancePrefix) {
			continue
		}
		created, err := time.Parse("2006-01-02 15:04:05 -0700 MST", parts[2])
		if err != nil || time.Since(created) < time.Hour {
			continue
		}
		if _, err := testbed.TryExec(h, "docker", "rm", "-f", parts[0]); err == nil {
			t.Logf("removed stale container %s of %s on %s", parts[0], parts[1], h.Name)
		}
	}
}

// containers counts the instance's containers on every host that answers.
func (j *journey) containers() int {
	j.t.Helper()
	n, _ := e2e.CountContainers(j.Bed.Hosts, j.Instance, true, func(h testbed.Host, err error) {
		j.t.Logf("list containers on %s: %v", h.Name, err)
	})
	return n
}

// sessionID asks the API, as the user, for the id of their session.
func (j *journey) sessionID(id int) string {
	j.t.Helper()
	a := j.Req(id, "GET", "/remote-desktop/api/status", "", map[string]string{"Accept": "application/json"})
	sess, _ := a.Data()["session"].(map[string]any)
	if sid, _ := sess["id"].(string); a.Code == 200 && sid != "" {
		return sid
	}
	j.t.Fatalf("status of user %d: %d %s", id, a.Code, a.Raw)
	return ""
}

func (j *journey) shot(tb *tab, name string) string {
	j.t.Helper()
	return j.shots.take(tb, name)
}

func (j *journey) timing(format string, args ...any) {
	j.t.Helper()
	s := fmt.Sprintf(format, args...)
	j.timings = append(j.timings, s)
	j.t.Log(s)
}

// clockSeconds reads a countdown, mm:ss or h:mm:ss.
func clockSeconds(t *testing.T, s string) int {
	t.Helper()
	total := 0
	for _, part := range strings.Split(strings.TrimSpace(s), ":") {
		n, err := strconv.Atoi(part)
		if err != nil {
			t.Fatalf("countdown %q: %v", s, err)
		}
		total = total*60 + n
	}
	return total
}

func clock(s int) string { return fmt.Sprintf("%d:%02d", s/60, s%60) }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
