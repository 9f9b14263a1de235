package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// Container labels the module sets.
const (
	LabelInstance = "io.ctf-remote-desktop.instance"
	LabelSession  = "io.ctf-remote-desktop.session"
	LabelUser     = "io.ctf-remote-desktop.user"
)

// System is the product as a system test runs it: the real Caddy binary
// with the module, in front of the CTFd stand-in, on the test bed's hosts,
// with an instance label of its own so that only its own containers are
// ever touched. Its methods fail the test they were made for (see In).
type System struct {
	Bed      *testbed.Testbed
	CTFd     *CTFd
	Caddy    *Caddy // nil until Start
	Instance string
	// KeepLog, if set, is where Caddy's log is written when the test ends.
	KeepLog string

	t       testing.TB
	cookies *cookieJar // shared by the copies In makes
}

type cookieJar struct {
	mu   sync.Mutex
	byID map[int]string
	next int // NewUser's last id above 100
}

var instanceSeq atomic.Int64

// NewInstance is an instance label unique on this machine for a while:
// prefix, the process id and a sequence number ("sys1234-5").
func NewInstance(prefix string) string {
	return fmt.Sprintf("%s%d-%d", prefix, os.Getpid()%10000, instanceSeq.Add(1))
}

// NewSystem prepares a System on bed in front of ctfd with that instance
// label; Start runs Caddy.
func NewSystem(t testing.TB, bed *testbed.Testbed, ctfd *CTFd, instance string) *System {
	return &System{Bed: bed, CTFd: ctfd, Instance: instance, t: t, cookies: &cookieJar{byID: map[int]string{}}}
}

// In returns a copy of s that fails t (a subtest), sharing everything else.
func (s *System) In(t testing.TB) *System {
	c := *s
	c.t = t
	return &c
}

// Caddyfile is the configuration of the System with nothing optional set:
// its bed, instance, a hosts_file that does not exist, and identity from
// the CTFd stand-in (cache_ttl 1s, timeout 2s).
func (s *System) Caddyfile() Caddyfile {
	return Caddyfile{
		Bed: s.Bed, Instance: s.Instance,
		HostsFile: filepath.Join(s.t.TempDir(), "no-hosts.yml"),
		Identity:  CTFdIdentity(s.CTFd, "1s", "2s"),
	}
}

// Start runs Caddy with caddyfile (StartCaddy; dataDir "" is a new
// temporary one). When the test ends Caddy is stopped (SIGTERM: a
// shutdown_policy destroy removes the sessions), its log kept if KeepLog
// says so, and whatever is left of the instance on the hosts is removed.
func (s *System) Start(caddyfile, dataDir string) *Caddy {
	s.t.Helper()
	s.Caddy = StartCaddy(s.t, CaddyOptions{Caddyfile: caddyfile, DataDir: dataDir})
	s.CleanupOnEnd()
	return s.Caddy
}

// CleanupOnEnd registers what Start does at the end of the test, for a
// Caddy started some other way and assigned to s.Caddy.
func (s *System) CleanupOnEnd() {
	t, c := s.t, s.Caddy
	t.Cleanup(func() {
		if c.Running() {
			if err := c.Stop(); err != nil {
				t.Logf("caddy stop: %v", err)
			}
		}
		if s.KeepLog != "" {
			if err := os.MkdirAll(filepath.Dir(s.KeepLog), 0o755); err == nil {
				_ = os.WriteFile(s.KeepLog, []byte(c.Logs()), 0o644)
			}
		}
		if n := RemoveInstance(t, s.Bed.Hosts, s.Instance); n > 0 {
			t.Logf("removed %d leftover container(s) of %s", n, s.Instance)
		}
	})
}

// Cookie is a CTFd session cookie of user, logged in once per System.
func (s *System) Cookie(user int) string {
	s.cookies.mu.Lock()
	c, ok := s.cookies.byID[user]
	s.cookies.mu.Unlock()
	if ok {
		return c
	}
	return s.Login(user)
}

// Login opens a new CTFd session for user; Cookie returns it from now on.
func (s *System) Login(user int) string {
	c := s.CTFd.Login(user)
	s.cookies.mu.Lock()
	s.cookies.byID[user] = c
	s.cookies.mu.Unlock()
	return c
}

// NewUser registers a fresh CTFd player (ids 101, 102 ...) and returns its
// id.
func (s *System) NewUser() int {
	s.cookies.mu.Lock()
	s.cookies.next++
	id := 100 + s.cookies.next
	s.cookies.mu.Unlock()
	s.CTFd.AddUser(User{ID: id, Name: fmt.Sprintf("p%d", id), Email: fmt.Sprintf("p%d@example.com", id)})
	return id
}

// HostOf returns the bed's host with that address (a session's "host").
func (s *System) HostOf(ip any) testbed.Host {
	s.t.Helper()
	for _, h := range s.Bed.Hosts {
		if h.IP == ip {
			return h
		}
	}
	s.t.Fatalf("session on unknown host %v", ip)
	return testbed.Host{}
}

// InstanceContainers lists the ids of instance's containers on h; all:
// stopped ones too.
func InstanceContainers(h testbed.Host, instance string, all bool) ([]string, error) {
	flag := "-q"
	if all {
		flag = "-aq"
	}
	out, err := testbed.TryExec(h, "docker", "ps", flag, "--filter", "label="+LabelInstance+"="+instance)
	return strings.Fields(out), err
}

// CountContainers counts instance's containers on hosts (all: stopped ones
// too). A host that cannot be asked is passed to skip and not counted; with
// skip nil the count stops at it and returns the error.
func CountContainers(hosts []testbed.Host, instance string, all bool, skip func(testbed.Host, error)) (int, error) {
	n := 0
	for _, h := range hosts {
		ids, err := InstanceContainers(h, instance, all)
		if err != nil && skip == nil {
			return 0, fmt.Errorf("list containers of %s on %s: %w", instance, h.Name, err)
		}
		if err != nil {
			skip(h, err)
		}
		n += len(ids)
	}
	return n, nil
}

// Containers counts the instance's running containers on every host.
func (s *System) Containers() int {
	s.t.Helper()
	n, err := CountContainers(s.Bed.Hosts, s.Instance, false, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return n
}

// RemoveInstance force-removes every container of instance on hosts and
// says how many there were; what fails is logged.
func RemoveInstance(t testing.TB, hosts []testbed.Host, instance string) int {
	n := 0
	for _, h := range hosts {
		ids, err := InstanceContainers(h, instance, true)
		if err != nil {
			t.Logf("list leftovers of %s on %s: %v", instance, h.Name, err)
			continue
		}
		if len(ids) > 0 {
			n += len(ids)
			if _, err := testbed.TryExec(h, append([]string{"docker", "rm", "-f"}, ids...)...); err != nil {
				t.Logf("remove leftovers of %s on %s: %v", instance, h.Name, err)
			}
		}
	}
	return n
}

// ContainerSessions returns, for the instance's containers on h (running
// or not), the session label of each, by container id.
func (s *System) ContainerSessions(h testbed.Host) map[string]string {
	s.t.Helper()
	out := testbed.Exec(s.t, h, "docker", "ps", "-a", "--filter", "label="+LabelInstance+"="+s.Instance,
		"--format", `{{.ID}} {{.Label "`+LabelSession+`"}}`)
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if id, sess, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			m[id] = sess
		}
	}
	return m
}

// ContainerOf returns the id of the container of session id on h ("" if
// there is none).
func (s *System) ContainerOf(h testbed.Host, sessionID string) string {
	s.t.Helper()
	for id, sess := range s.ContainerSessions(h) {
		if sess == sessionID {
			return id
		}
	}
	return ""
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
