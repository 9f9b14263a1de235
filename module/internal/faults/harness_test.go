package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// Timings of every Caddy these tests start: short, so that faults show
// within seconds.
const (
	probeInterval  = 2 * time.Second
	reaperInterval = 2 * time.Second
	orphanGrace    = 5 * time.Second
	dialTimeout    = 3 * time.Second
	// keepaliveTimeout is sshpool's fixed bound on a keepalive round trip
	// (sshpool.DefaultKeepaliveTimeout; not configurable from Caddy).
	keepaliveTimeout = 5 * time.Second

	// apiBound: no API request may take longer, whatever a host does.
	apiBound = 15 * time.Second
)

// system is one Caddy (the real binary) with the module, in front of the
// CTFd stand-in, on the test bed's three hosts, with its own instance label
// so that only its own containers are ever touched.
type system struct {
	t        *testing.T
	tb       *testbed.Testbed
	ctfd     *e2e.CTFd
	caddy    *e2e.Caddy
	instance string
	cfg      sysConfig
	cookies  map[int]string
	nextUser *int // shared by the copies in() makes
}

type sysConfig struct {
	desktop bool   // the real desktop image instead of the tiny one
	image   string // docker_image of every host; default the tiny (or desktop) image
	policy  string // shutdown_policy; default destroy
	extra   string // more lines for the app block
	global  string // more lines for the global options block (storage ...)
	dataDir string // Caddy's data directory; default a new temporary one
}

var seq int

// newSystem starts Caddy; it is stopped (and this instance's containers
// removed) when the test ends.
func newSystem(t *testing.T, cfg sysConfig) *system {
	t.Helper()
	s := prepareSystem(t, cfg)
	s.caddy = e2e.StartCaddy(t, e2e.CaddyOptions{Caddyfile: s.caddyfile(), DataDir: cfg.dataDir})
	s.cleanupOnEnd()
	return s
}

// prepareSystem is newSystem without starting Caddy.
func prepareSystem(t *testing.T, cfg sysConfig) *system {
	t.Helper()
	tb := testbed.Load(t)
	ctfd := e2e.NewCTFd(t)
	seq++
	s := &system{t: t, tb: tb, ctfd: ctfd, cfg: cfg, cookies: map[int]string{}, nextUser: new(int),
		instance: fmt.Sprintf("flt%d-%d", os.Getpid()%10000, seq)}
	if s.cfg.image == "" {
		s.cfg.image = tb.TinyImage
		if cfg.desktop {
			s.cfg.image = tb.DesktopImage
		}
	}
	if s.cfg.policy == "" {
		s.cfg.policy = "destroy"
	}
	return s
}

func (s *system) cleanupOnEnd() {
	s.t.Cleanup(func() {
		if s.caddy.Running() {
			_ = s.caddy.Stop()
		}
		if dir := os.Getenv("RD_FAULTS_LOGDIR"); dir != "" { // keep Caddy's log (debugging)
			_ = os.WriteFile(filepath.Join(dir, strings.ReplaceAll(s.t.Name(), "/", "_")+".caddy.log"), []byte(s.caddy.Logs()), 0o644)
		}
		s.removeLeftovers()
	})
}

// in returns a copy of s bound to t (a subtest), sharing everything else.
func (s *system) in(t *testing.T) *system {
	c := *s
	c.t = t
	return &c
}

func (s *system) caddyfile() string {
	var hosts strings.Builder
	for _, h := range s.tb.Hosts {
		fmt.Fprintf(&hosts, "\t\thost %s {\n\t\t\tuser %s\n\t\t\tdocker_image %s\n\t\t}\n", h.IP, h.User, s.cfg.image)
	}
	return fmt.Sprintf(`{
	admin {{ADMIN}}
%s
	remote_desktop {
		hosts_file %s
%s		known_hosts %s
		ssh_key %s
		instance %s
		probe_interval %s
		reaper_interval %s
		orphan_grace %s
		dial_timeout %s
		memory_limit 256m
		shm_size 64m
		resolution 1280x800
		cpu_limit 1
		shutdown_policy %s
%s
	}
}
http://127.0.0.1:{{PORT}} {
	remote_desktop {
		identity ctfd {
			url %s
			admin_token %s
			cache_ttl 1s
			timeout 2s
		}
	}
	respond "ctfd itself" 200
}
`, s.cfg.global, filepath.Join(s.t.TempDir(), "no-hosts.yml"), hosts.String(), s.tb.KnownHosts, s.tb.SSHKey,
		s.instance, probeInterval, reaperInterval, orphanGrace, dialTimeout, s.cfg.policy, s.cfg.extra,
		s.ctfd.URL(), s.ctfd.AdminToken())
}

// newUser registers a fresh CTFd player and returns its id.
func (s *system) newUser() int {
	*s.nextUser++
	id := 100 + *s.nextUser
	s.ctfd.AddUser(e2e.User{ID: id, Name: fmt.Sprintf("p%d", id), Email: fmt.Sprintf("p%d@example.com", id)})
	return id
}

func (s *system) cookie(user int) string {
	if c, ok := s.cookies[user]; ok {
		return c
	}
	s.cookies[user] = s.ctfd.Login(user)
	return s.cookies[user]
}

// answer is one API exchange, timed.
type answer struct {
	code int
	body map[string]any
	took time.Duration
	err  error // transport error or client timeout
}

func (a answer) data() map[string]any {
	d, _ := a.body["data"].(map[string]any)
	return d
}

// try sends a request as user (0: anonymous) and never fails the test: a
// request that cannot be sent or times out (after 2×apiBound) is an answer
// with err set.
func (s *system) try(user int, method, path, body string) answer {
	return s.tryWithin(2*apiBound, user, method, path, body)
}

// tryWithin is try with the client giving up after timeout.
func (s *system) tryWithin(timeout time.Duration, user int, method, path, body string) answer {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.caddy.URL+path, rd)
	if err != nil {
		return answer{err: err}
	}
	if user != 0 {
		req.Header.Set("Cookie", "session="+s.cookie(user))
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", s.caddy.URL)
	}
	start := time.Now()
	resp, err := e2e.LoopbackClient(timeout).Do(req)
	if err != nil {
		return answer{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, took: time.Since(start), err: err}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// req is try that fails the test on a transport error.
func (s *system) req(user int, method, path, body string) answer {
	s.t.Helper()
	a := s.try(user, method, path, body)
	if a.err != nil {
		s.t.Fatalf("%s %s as %d: %v (after %v)", method, path, user, a.err, a.took.Round(time.Millisecond))
	}
	return a
}

// bounded is req that also fails the test if the answer took apiBound or
// more, and logs how long it took.
func (s *system) bounded(what string, user int, method, path, body string) answer {
	s.t.Helper()
	return s.boundedUnless("", what, user, method, path, body)
}

// boundedUnless is bounded for a request a known bug (bug: its id in
// RELIABILITY.md) may hold past apiBound: then the bug is reported.
func (s *system) boundedUnless(bug, what string, user int, method, path, body string) answer {
	s.t.Helper()
	a := s.tryWithin(apiBound+time.Second, user, method, path, body)
	s.t.Logf("timed: %-58s %3d in %v", what, a.code, a.took.Round(time.Millisecond))
	if a.err != nil || a.took >= apiBound {
		msg := fmt.Sprintf("%s (%s %s): %v after %v, want an answer within %v", what, method, path, a.err, a.took.Round(time.Millisecond), apiBound)
		if bug != "" {
			knownBug(s.t, bug, "%s", msg)
		} else {
			s.t.Error(msg)
		}
	}
	return a
}

// --- the player's view ---

// status returns data.session of the owner's /api/status (nil: none).
func (s *system) status(user int) map[string]any {
	s.t.Helper()
	a := s.req(user, http.MethodGet, "/remote-desktop/api/status", "")
	if a.code != http.StatusOK {
		s.t.Fatalf("status for %d: %d %v", user, a.code, a.body)
	}
	sess, _ := a.data()["session"].(map[string]any)
	return sess
}

func (s *system) create(user int) {
	s.t.Helper()
	a := s.req(user, http.MethodPost, "/remote-desktop/api/create", "{}")
	if a.code != http.StatusAccepted && a.code != http.StatusOK {
		s.t.Fatalf("create for %d: %d %v", user, a.code, a.body)
	}
}

// createReady starts a session for user and waits until it is ready.
func (s *system) createReady(user int) map[string]any {
	s.t.Helper()
	s.create(user)
	return s.waitReady(user, 60*time.Second)
}

func (s *system) waitReady(user int, within time.Duration) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		sess := s.status(user)
		if sess != nil && sess["state"] == "ready" {
			return sess
		}
		if sess != nil && (sess["state"] == "failed" || sess["state"] == "destroyed") {
			s.t.Fatalf("session of %d ended: %v", user, sess)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("session of %d not ready within %v: %v\n%s", user, within, sess, tail(s.caddy.Logs(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// snapshot is what must not change about a live session: where it runs and
// until when.
type snapshot struct{ host, id, expires, port string }

func (s *system) snap(user int) snapshot {
	s.t.Helper()
	sess := s.status(user)
	if sess == nil || sess["state"] != "ready" {
		s.t.Fatalf("session of %d: %v", user, sess)
	}
	// The port is not in the player's view; auth-check tells it.
	req, _ := http.NewRequest(http.MethodGet, s.caddy.URL+"/remote-desktop/api/auth-check", nil)
	req.Header.Set("Cookie", "session="+s.cookie(user))
	req.Header.Set("X-User-ID", fmt.Sprint(user))
	resp, err := e2e.LoopbackClient(apiBound).Do(req)
	if err != nil {
		s.t.Fatalf("auth-check for %d: %v", user, err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-VNC-Port") == "" {
		s.t.Fatalf("auth-check for %d: %d, no X-VNC-Port", user, resp.StatusCode)
	}
	return snapshot{host: fmt.Sprint(sess["host"]), id: fmt.Sprint(sess["id"]), expires: fmt.Sprint(sess["expires_at"]), port: resp.Header.Get("X-VNC-Port")}
}

// desktop fetches the user's noVNC page through Caddy's proxy.
func (s *system) desktop(user int) answer {
	return s.try(user, http.MethodGet, fmt.Sprintf("/remote-desktop/vnc/%d/vnc.html", user), "")
}

// --- the admin's view ---

type hostStatus struct {
	Name    string  `json:"name"`
	Health  string  `json:"health"`
	Reason  string  `json:"reason"`
	Drained bool    `json:"drained"`
	Active  int     `json:"active"`
	Checks  []check `json:"checks"`
}

type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

type event struct {
	ID      uint64         `json:"id"`
	Time    time.Time      `json:"time"`
	Type    string         `json:"type"`
	Level   string         `json:"level"`
	Host    string         `json:"host"`
	User    string         `json:"user"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data"`
}

type sessionInfo struct {
	ID        string     `json:"id"`
	UserID    string     `json:"user_id"`
	State     string     `json:"state"`
	Host      string     `json:"host"`
	ExpiresAt *time.Time `json:"expires_at"`
	Error     string     `json:"error"`
}

func (s *system) adminGet(path string, out any) {
	s.t.Helper()
	a := s.req(e2e.AdminUserID, http.MethodGet, path, "")
	if a.code != http.StatusOK {
		s.t.Fatalf("GET %s as admin: %d %v", path, a.code, a.body)
	}
	raw, _ := json.Marshal(a.data())
	if err := json.Unmarshal(raw, out); err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
}

func (s *system) hosts() map[string]hostStatus {
	s.t.Helper()
	var out struct{ Hosts []hostStatus }
	s.adminGet("/remote-desktop/admin/api/hosts", &out)
	m := map[string]hostStatus{}
	for _, h := range out.Hosts {
		m[h.Name] = h
	}
	return m
}

func (s *system) events() []event {
	s.t.Helper()
	var out struct{ Events []event }
	s.adminGet("/remote-desktop/admin/api/events/recent?limit=100000", &out)
	return out.Events
}

// eventsSince returns the events of type typ (any type if "") for host (any
// if "") with an id above after.
func (s *system) eventsSince(after uint64, typ, host string) []event {
	s.t.Helper()
	var out []event
	for _, e := range s.events() {
		if e.ID > after && (typ == "" || e.Type == typ) && (host == "" || e.Host == host) {
			out = append(out, e)
		}
	}
	return out
}

func (s *system) lastEventID() uint64 {
	s.t.Helper()
	var last uint64
	for _, e := range s.events() {
		last = max(last, e.ID)
	}
	return last
}

// waitEvent waits for an event of type typ for host with an id above after
// and returns it.
func (s *system) waitEvent(after uint64, typ, host string, within time.Duration) event {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if evs := s.eventsSince(after, typ, host); len(evs) > 0 {
			return evs[0]
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no %s event for %q within %v; events since #%d:\n%s", typ, host, within, after, s.story(after))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// story is the event log since after, one line per event.
func (s *system) story(after uint64) string {
	var b strings.Builder
	for _, e := range s.eventsSince(after, "", "") {
		fmt.Fprintf(&b, "  #%d %s %-18s %-13s %s\n", e.ID, e.Time.Format("15:04:05.000"), e.Type, e.Host, e.Message)
	}
	return b.String()
}

// sessions lists every live session (admin view).
func (s *system) sessions() []sessionInfo {
	s.t.Helper()
	var out struct{ Sessions []sessionInfo }
	s.adminGet("/remote-desktop/admin/api/containers", &out)
	return out.Sessions
}

// waitHealth waits until host's health is want and returns how long it took.
func (s *system) waitHealth(host, want string, within time.Duration) time.Duration {
	s.t.Helper()
	start := time.Now()
	for {
		h := s.hosts()[host]
		if h.Health == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			s.t.Fatalf("host %s is %s (%s), not %s, after %v\n%s", host, h.Health, h.Reason, want, within, tail(s.caddy.Logs(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *system) waitAllHealthy(within time.Duration) {
	s.t.Helper()
	for _, h := range s.tb.Hosts {
		s.waitHealth(h.IP, "healthy", within)
	}
}

// --- the hosts ---

const labelInstance = "io.ctf-remote-desktop.instance"
const labelSession = "io.ctf-remote-desktop.session"

// containerSessions returns, for this instance's containers on host (running
// or not), the session label of each, by container id.
func (s *system) containerSessions(h testbed.Host) map[string]string {
	s.t.Helper()
	out := testbed.Exec(s.t, h, "docker", "ps", "-a", "--filter", "label="+labelInstance+"="+s.instance,
		"--format", `{{.ID}} {{.Label "`+labelSession+`"}}`)
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if id, sess, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			m[id] = sess
		}
	}
	return m
}

// containerOf returns the id of the container of session id on h.
func (s *system) containerOf(h testbed.Host, sessionID string) string {
	s.t.Helper()
	for id, sess := range s.containerSessions(h) {
		if sess == sessionID {
			return id
		}
	}
	return ""
}

// waitNoOrphans waits until every container of this instance on h belongs
// to a live session on h.
func (s *system) waitNoOrphans(h testbed.Host, within time.Duration) time.Duration {
	s.t.Helper()
	start := time.Now()
	for {
		live := map[string]bool{}
		for _, ss := range s.sessions() {
			if ss.Host == h.IP {
				live[ss.ID] = true
			}
		}
		var orphans []string
		for id, sess := range s.containerSessions(h) {
			if !live[sess] {
				orphans = append(orphans, id+" (session "+sess+")")
			}
		}
		if len(orphans) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			sort.Strings(orphans)
			s.t.Fatalf("containers without a live session on %s after %v: %v", h.Name, within, orphans)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// removeLeftovers force-removes this instance's containers on every host.
func (s *system) removeLeftovers() {
	for _, h := range s.tb.Hosts {
		out, _ := testbed.TryExec(h, "docker", "ps", "-aq", "--filter", "label="+labelInstance+"="+s.instance)
		if ids := strings.Fields(out); len(ids) > 0 {
			_, _ = testbed.TryExec(h, append([]string{"docker", "rm", "-f"}, ids...)...)
		}
	}
}

// docker runs the docker CLI on this machine (not in a host).
func docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), err
}

// restoreHost undoes every fault these tests inject into h, whichever it
// was (each step is a no-op when there is nothing to undo), then waits until
// `testbed.sh status` reports the whole test bed healthy.
func restoreHost(t testing.TB, tb *testbed.Testbed, h testbed.Host) {
	t.Helper()
	repairHost(t, tb, h)
	waitTestbedHealthy(t)
}

// repairHost is restoreHost without the final wait.
func repairHost(t testing.TB, tb *testbed.Testbed, h testbed.Host) {
	t.Helper()
	if st, _ := docker("inspect", "-f", "{{.State.Paused}}", h.Name); strings.TrimSpace(st) == "true" {
		if _, err := docker("unpause", h.Name); err != nil {
			t.Errorf("restore %s: %v", h.Name, err)
		}
	}
	nets, _ := docker("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", h.Name)
	if !strings.Contains(" "+nets, " "+tb.Network+" ") {
		if _, err := docker("network", "connect", "--ip", h.IP, tb.Network, h.Name); err != nil {
			t.Errorf("restore %s: %v", h.Name, err)
		}
	}
	for _, args := range [][]string{{"tb-dockerd", "start"}, {"tb-sshd", "start"}} {
		if _, err := testbed.TryExec(h, args...); err != nil {
			t.Errorf("restore %s: %v", h.Name, err)
		}
	}
}

// waitTestbedHealthy waits (up to 60 s) until `testbed.sh status` exits 0.
func waitTestbedHealthy(t testing.TB) {
	t.Helper()
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, "bash", filepath.Join(root, "testdata/testbed/testbed.sh"), "status").CombinedOutput()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the test bed is not healthy 60 s after restoring it:\n%s", out)
			return
		}
		time.Sleep(time.Second)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// measured collects figures for RELIABILITY.md; each test logs its own.
func measured(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("MEASURED "+format, args...)
}

// knownBug reports a regression of a product bug this package found and
// fixed (RELIABILITY.md, "Bugs found and fixed"): a failure.
func knownBug(t testing.TB, id, format string, args ...any) {
	t.Helper()
	t.Errorf("REGRESSION of %s (RELIABILITY.md): "+format, append([]any{id}, args...)...)
}
