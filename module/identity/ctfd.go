package identity

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/metrics"
)

// CTFd asks a CTFd instance who a request belongs to, following the contract
// CTFd 3.x's API keeps:
//
//   - GET /api/v1/users/me with the player's Cookie header (and JSON content
//     type, so that "not logged in" is a 403 rather than a redirect) gives
//     the user id;
//   - GET /api/v1/users/<id> with an admin token gives the admin view: type
//     (admin or user), banned, verified.
//
// Answers are cached per session cookie (by its hash) for CacheTTL, so that a
// reconnect storm is not a CTFd request storm while a logout or a ban still
// takes effect within CacheTTL. Anything but a clear answer is
// ErrUnavailable: CTFd being down never lets anyone in.
type CTFd struct {
	// Base URL of CTFd, e.g. http://ctfd:8000.
	BaseURL *url.URL
	// An admin account's API token (ctfd_...). Never logged or forwarded.
	AdminToken string
	// Name of CTFd's session cookie. Default: session.
	CookieName string
	// How long an answer is reused. Default: 10s.
	CacheTTL time.Duration
	// Bound on each call to CTFd. Default: 5s.
	Timeout time.Duration
	// Refuse users whose email is not verified (set it when CTFd's
	// verify_emails setting is on).
	RequireVerified bool
	// ClientIP gives the player's address, sent to CTFd as
	// X-Forwarded-For. Default: the request's RemoteAddr.
	ClientIP func(*http.Request) string

	now func() time.Time

	// Two clients, never mixed: CTFd turns the session of a request that
	// carries both the admin token and a player's cookie into an admin
	// session. The player client sends only the player's cookie; the admin
	// client only the token and the cookie CTFd gave it, which is itself a
	// 7-day admin session: it lives in this in-memory jar only, is never
	// logged, and goes to nothing but CTFd.
	initOnce sync.Once
	player   *http.Client // no cookie jar: the player's cookie is forwarded as is
	admin    *http.Client // keeps CTFd's cookie between token calls

	nameMu sync.Mutex
	name   *nameCache // CTFName's answer

	mu       sync.Mutex
	cache    map[[32]byte]*cacheEntry
	inflight map[[32]byte]*call
}

type cacheEntry struct {
	user    User
	err     error
	expires time.Time
}

type call struct {
	done chan struct{}
	user User
	err  error
}

const maxCacheEntries = 100000

func (c *CTFd) init() {
	c.initOnce.Do(func() {
		if c.CookieName == "" {
			c.CookieName = "session"
		}
		if c.CacheTTL == 0 {
			c.CacheTTL = 10 * time.Second
		}
		if c.Timeout == 0 {
			c.Timeout = 5 * time.Second
		}
		if c.now == nil {
			c.now = time.Now
		}
		noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		c.player = &http.Client{Timeout: c.Timeout, CheckRedirect: noRedirect}
		jar, _ := cookiejar.New(nil)
		c.admin = &http.Client{Timeout: c.Timeout, CheckRedirect: noRedirect, Jar: jar}
		c.cache = make(map[[32]byte]*cacheEntry)
		c.inflight = make(map[[32]byte]*call)
	})
}

// SetClock replaces the time source (tests).
func (c *CTFd) SetClock(now func() time.Time) { c.init(); c.now = now }

// Identify implements Source.
func (c *CTFd) Identify(r *http.Request) (User, error) {
	u, cached, err := c.identify(r)
	metrics.IdentityLookup(Result(err), cached)
	return u, err
}

// Result names an Identify outcome for metrics: ok, unauthenticated,
// forbidden or unavailable.
func Result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrUnauthenticated):
		return "unauthenticated"
	case errors.Is(err, ErrForbidden):
		return "forbidden"
	default:
		return "unavailable"
	}
}

// identify also says whether CTFd was spared the question (a cached answer,
// or one shared with a lookup already in flight).
func (c *CTFd) identify(r *http.Request) (User, bool, error) {
	c.init()
	cookie, err := r.Cookie(c.CookieName)
	if err != nil || cookie.Value == "" {
		return User{}, true, ErrUnauthenticated
	}
	key := sha256.Sum256([]byte(cookie.Value))

	c.mu.Lock()
	if e, ok := c.cache[key]; ok && c.now().Before(e.expires) {
		c.mu.Unlock()
		return e.user, true, e.err
	}
	if cl, ok := c.inflight[key]; ok { // someone is asking already: wait for them
		c.mu.Unlock()
		select {
		case <-cl.done:
			return cl.user, true, cl.err
		case <-r.Context().Done():
			return User{}, true, ErrUnavailable
		}
	}
	cl := &call{done: make(chan struct{})}
	c.inflight[key] = cl
	c.mu.Unlock()

	// Not bound to the request's context: waiters share this call.
	ctx, cancel := context.WithTimeout(context.Background(), 2*c.Timeout)
	cl.user, cl.err = c.ask(ctx, r)
	cancel()

	c.mu.Lock()
	delete(c.inflight, key)
	if !errors.Is(cl.err, ErrUnavailable) { // never cache "could not ask"
		if len(c.cache) >= maxCacheEntries {
			c.pruneLocked()
		}
		c.cache[key] = &cacheEntry{user: cl.user, err: cl.err, expires: c.now().Add(c.CacheTTL)}
	}
	c.mu.Unlock()
	close(cl.done)
	return cl.user, false, cl.err
}

func (c *CTFd) pruneLocked() {
	now := c.now()
	for k, e := range c.cache {
		if !now.Before(e.expires) {
			delete(c.cache, k)
		}
	}
	for k := range c.cache { // still full: drop arbitrary entries
		if len(c.cache) < maxCacheEntries/2 {
			break
		}
		delete(c.cache, k)
	}
}

// Forget drops every cached answer (tests, and an admin's "log everyone out").
func (c *CTFd) Forget() {
	c.init()
	c.mu.Lock()
	clear(c.cache)
	c.mu.Unlock()
}

func (c *CTFd) ask(ctx context.Context, r *http.Request) (User, error) {
	var me struct {
		Success bool `json:"success"`
		Data    struct {
			ID   *int64 `json:"id"`
			Name string `json:"name"`
		} `json:"data"`
	}
	req, err := c.request(ctx, "/api/v1/users/me")
	if err != nil {
		return User{}, err
	}
	req.Header.Set("Cookie", r.Header.Get("Cookie"))
	ipOf := c.ClientIP
	if ipOf == nil {
		ipOf = clientIP
	}
	ip := ipOf(r)
	if ip == "" {
		ip = clientIP(r)
	}
	if ip != "" {
		req.Header.Set("X-Forwarded-For", ip)
	}
	status, ctype, err := c.do(c.player, req, &me)
	switch {
	case err != nil:
		return User{}, err
	case status >= 500:
		return User{}, fmt.Errorf("%w: CTFd answered %d to /api/v1/users/me", ErrUnavailable, status)
	case status == http.StatusForbidden && strings.HasPrefix(ctype, "text/html"):
		// CTFd's app-wide ban check answers with an HTML page before the
		// API runs (not logged in is a JSON 403). The session is kept: the
		// same cookie works again after an unban, so this is cached only
		// for CacheTTL like any answer.
		return User{}, ErrBanned
	case status != http.StatusOK:
		// 403 (not logged in), 401 (password changed), 302 (must change
		// password, or no JSON content type): no identity.
		return User{}, ErrUnauthenticated
	case !me.Success || me.Data.ID == nil || *me.Data.ID <= 0:
		return User{}, fmt.Errorf("%w: CTFd's /api/v1/users/me answer has no user id", ErrUnavailable)
	}
	u := User{ID: strconv.FormatInt(*me.Data.ID, 10), Name: me.Data.Name}

	var view struct {
		Success bool `json:"success"`
		Data    struct {
			ID       *int64 `json:"id"`
			Type     string `json:"type"`
			Banned   *bool  `json:"banned"`
			Verified bool   `json:"verified"`
		} `json:"data"`
	}
	req, err = c.request(ctx, "/api/v1/users/"+u.ID)
	if err != nil {
		return User{}, err
	}
	req.Header.Set("Authorization", "Token "+c.AdminToken)
	status, _, err = c.do(c.admin, req, &view)
	switch {
	case err != nil:
		return User{}, err
	case status == http.StatusNotFound:
		return User{}, ErrUnauthenticated // deleted since the cookie was issued
	case status != http.StatusOK:
		return User{}, fmt.Errorf("%w: CTFd answered %d to the admin user lookup (is admin_token an admin's token?)", ErrUnavailable, status)
	case !view.Success || view.Data.Banned == nil || view.Data.Type == "":
		// Without the admin fields the token is not an admin's.
		return User{}, fmt.Errorf("%w: CTFd's user lookup lacks the admin view (is admin_token an admin's token?)", ErrUnavailable)
	case view.Data.ID == nil || strconv.FormatInt(*view.Data.ID, 10) != u.ID:
		return User{}, fmt.Errorf("%w: CTFd's user lookup answered for another user", ErrUnavailable)
	}
	if *view.Data.Banned {
		return User{}, ErrBanned
	}
	if c.RequireVerified && !view.Data.Verified && view.Data.Type != "admin" {
		return User{}, fmt.Errorf("%w: email not verified", ErrForbidden)
	}
	u.Admin = view.Data.Type == "admin"
	return u, nil
}

func (c *CTFd) request(ctx context.Context, path string) (*http.Request, error) {
	u := c.BaseURL.JoinPath(path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: build CTFd request: %v", ErrUnavailable, err)
	}
	// CTFd reads tokens only on JSON requests, and answers "not logged in"
	// with 403 instead of a login redirect when the request is JSON.
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// do sends req and decodes a 200 JSON body into out, returning the status
// and content type. Transport failures, timeouts and undecodable 200s are
// ErrUnavailable.
func (c *CTFd) do(client *http.Client, req *http.Request, out any) (int, string, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%w: ask CTFd %s: %v", ErrUnavailable, req.URL.Path, redactURLError(err))
	}
	defer resp.Body.Close()
	ctype := resp.Header.Get("Content-Type")
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return resp.StatusCode, ctype, nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return 0, "", fmt.Errorf("%w: CTFd's answer to %s is not the expected JSON: %v", ErrUnavailable, req.URL.Path, err)
	}
	return resp.StatusCode, ctype, nil
}

// redactURLError keeps only the cause: the URL in a *url.Error is the
// configured base URL, harmless, but the cause is what helps.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// clientIP is the address the request came from.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return strings.TrimSpace(r.RemoteAddr)
	}
	return host
}
