// Package system tests the product as it runs: the real Caddy binary built
// from this repository, the CTFd stand-in, and the real test bed's hosts.
package system

import (
	"net/http"
	"testing"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// CTFd user ids of the stand-in's accounts.
const (
	alice = 7
	bob   = 8
)

// system is e2e's System with this package's configuration knobs.
type system struct {
	*e2e.System
	t   *testing.T
	cfg sysConfig
}

type sysConfig struct {
	desktop  bool   // the real desktop image instead of the tiny one
	evil     bool   // the malicious desktop image (testdata/images/evil)
	policy   string // shutdown_policy, default destroy
	extra    string // more lines for the app block
	handler  string // more lines for the handler block
	identity string // the handler's identity block instead of CTFd's
	site     string // lines before the handler in the site block
	cacheTTL string // identity cache_ttl, default 1s
	timeout  string // identity timeout, default 2s
	dataDir  string
}

// newSystem starts Caddy with the module in front of the CTFd stand-in,
// on the test bed's three hosts, with its own instance label.
func newSystem(t *testing.T, cfg sysConfig) *system {
	t.Helper()
	tb := testbed.Load(t)
	ctfd := e2e.NewCTFd(t)
	ctfd.AddUser(e2e.User{ID: alice, Name: "alice", Email: "alice@example.com"})
	ctfd.AddUser(e2e.User{ID: bob, Name: "bob", Email: "bob@example.com"})
	s := &system{System: e2e.NewSystem(t, tb, ctfd, e2e.NewInstance("sys")), t: t, cfg: cfg}
	if s.cfg.policy == "" {
		s.cfg.policy = "destroy"
	}
	if s.cfg.cacheTTL == "" {
		s.cfg.cacheTTL = "1s"
	}
	if s.cfg.timeout == "" {
		s.cfg.timeout = "2s"
	}
	s.Start(s.caddyfile(), cfg.dataDir)
	return s
}

func (s *system) caddyfile() string {
	c := s.Caddyfile()
	c.Image = s.Bed.TinyImage
	if s.cfg.desktop {
		c.Image = s.Bed.DesktopImage
	}
	if s.cfg.evil {
		c.Image = s.Bed.EvilImage
	}
	c.Identity = e2e.CTFdIdentity(s.CTFd, s.cfg.cacheTTL, s.cfg.timeout)
	if s.cfg.identity != "" {
		c.Identity = s.cfg.identity
	}
	c.App = []string{"probe_interval 2s", "reaper_interval 2s", "orphan_grace 5s", "memory_limit 256m", "shm_size 64m",
		"resolution 1280x800", "cpu_limit 1", "shutdown_policy " + s.cfg.policy, s.cfg.extra}
	c.Site = []string{s.cfg.site}
	c.Handler = []string{s.cfg.handler}
	return c.String()
}

// req sends a request as user (0: anonymous) and decodes the JSON answer.
func (s *system) req(user int, method, path string, body string, hdr map[string]string) (int, map[string]any, http.Header) {
	s.t.Helper()
	a := s.Req(user, method, path, body, hdr)
	return a.Code, a.Body, a.Header
}

// createReady starts a session for user and waits until it is ready.
func (s *system) createReady(user int) map[string]any {
	s.t.Helper()
	return s.CreateReady(user, 90*time.Second)
}

// dialWS opens path as a websocket; it returns the HTTP status and, on 101,
// the connection.
func (s *system) dialWS(user int, path, origin string) (int, *e2e.WSConn) {
	s.t.Helper()
	resp, ws := s.DialWS(user, path, origin, nil)
	return resp.StatusCode, ws
}
