package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// TryWaitReady polls user's status until the session is ready (true), has
// ended (failed or destroyed) or within has passed; it returns the last
// session seen.
func (s *System) TryWaitReady(user int, within time.Duration) (map[string]any, bool) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		sess := s.Status(user)
		if sess != nil && sess["state"] == "ready" {
			return sess, true
		}
		if time.Now().After(deadline) || sess != nil && (sess["state"] == "failed" || sess["state"] == "destroyed") {
			return sess, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitReady is TryWaitReady that fails the test unless the session is
// ready, with the tail of Caddy's log if it is late.
func (s *System) WaitReady(user int, within time.Duration) map[string]any {
	s.t.Helper()
	sess, ok := s.TryWaitReady(user, within)
	if !ok {
		if sess != nil && (sess["state"] == "failed" || sess["state"] == "destroyed") {
			s.t.Fatalf("session of %d ended: %v", user, sess)
		}
		s.t.Fatalf("session of %d not ready within %v: %v\n%s", user, within, sess, Tail(s.Caddy.Logs(), 30))
	}
	return sess
}

// WaitHostsHealthy waits until the admin API lists hosts and shows every
// one healthy: the start-up checks (the isolation proof included) take
// some seconds, and a test that reads host figures or expects an idle
// cluster must not race them. Answers other than 200 are asked again.
func (s *System) WaitHostsHealthy(within time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		a := s.Req(AdminUserID, http.MethodGet, "/remote-desktop/admin/api/hosts", "", map[string]string{"Accept": "application/json"})
		var list struct{ Hosts []HostStatus }
		raw, _ := json.Marshal(a.Data())
		_ = json.Unmarshal(raw, &list)
		healthy := 0
		for _, h := range list.Hosts {
			if h.Health == "healthy" {
				healthy++
			}
		}
		if a.Code == http.StatusOK && len(list.Hosts) > 0 && healthy == len(list.Hosts) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("hosts not all healthy after %v: %d %s", within, a.Code, a.Raw)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// WaitHealth waits until host's health is want and returns how long it
// took.
func (s *System) WaitHealth(host, want string, within time.Duration) time.Duration {
	s.t.Helper()
	start := time.Now()
	for {
		h := s.Hosts()[host]
		if h.Health == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			s.t.Fatalf("host %s is %s (%s), not %s, after %v\n%s", host, h.Health, h.Reason, want, within, Tail(s.Caddy.Logs(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitEachHealthy is WaitHealth(healthy) for each of the bed's hosts in
// turn, each within its own limit.
func (s *System) WaitEachHealthy(within time.Duration) {
	s.t.Helper()
	for _, h := range s.Bed.Hosts {
		s.WaitHealth(h.IP, "healthy", within)
	}
}

// WaitEvent waits for an event of type typ for host ("": any) with an id
// above after and returns it.
func (s *System) WaitEvent(after uint64, typ, host string, within time.Duration) Event {
	s.t.Helper()
	return s.waitEvent(after, typ, within, func(e Event) bool { return host == "" || e.Host == host }, fmt.Sprintf("for %q", host))
}

// WaitUserEvent waits for an event of type typ for user with an id above
// after and returns it.
func (s *System) WaitUserEvent(after uint64, typ string, user int, within time.Duration) Event {
	s.t.Helper()
	return s.waitEvent(after, typ, within, func(e Event) bool { return e.User == strconv.Itoa(user) }, fmt.Sprintf("for user %d", user))
}

func (s *System) waitEvent(after uint64, typ string, within time.Duration, match func(Event) bool, what string) Event {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, e := range s.EventsSince(after, typ, "") {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no %s event %s within %v; events since #%d:\n%s", typ, what, within, after, s.Story(after))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitNoOrphans waits until every container of the instance on h belongs to
// a live session on h, and returns how long it took.
func (s *System) WaitNoOrphans(h testbed.Host, within time.Duration) time.Duration {
	s.t.Helper()
	start := time.Now()
	for {
		live := map[string]bool{}
		for _, ss := range s.Sessions() {
			if ss.Host == h.IP {
				live[ss.ID] = true
			}
		}
		var orphans []string
		for id, sess := range s.ContainerSessions(h) {
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

// WaitSessionGone waits until no host has a container of session and says
// how long that took and what it saw first. A host that cannot be asked
// (its engine restarting) is asked again.
func (s *System) WaitSessionGone(what, session string, within time.Duration) string {
	s.t.Helper()
	start := time.Now()
	var first []string // what the first complete look found
	looked := false
	for {
		var left []string
		var errs []error
		for _, h := range s.Bed.Hosts {
			out, err := testbed.TryExec(h, "docker", "ps", "-a", "--filter", "label="+LabelSession+"="+session, "--format", "{{.Names}} ({{.Status}})")
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, c := range strings.Split(strings.TrimSpace(out), "\n") {
				if c != "" {
					left = append(left, h.Name+": "+c)
				}
			}
		}
		if !looked && len(errs) == 0 {
			first, looked = left, true
		}
		if len(left) == 0 && len(errs) == 0 {
			if len(first) == 0 {
				return "already gone"
			}
			return fmt.Sprintf("gone %s later (first seen: %s)", time.Since(start).Round(time.Millisecond), strings.Join(first, ", "))
		}
		if time.Since(start) > within {
			s.t.Fatalf("%s: the session's container is still there after %s: %v (errors: %v)", what, time.Since(start).Round(time.Millisecond), left, errs)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
