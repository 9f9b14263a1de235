package remotedesktop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
)

// configRecheck re-identifies the viewer of a long-lived response (an open
// desktop, the admin event stream) for the caddy identity source. The user
// comes from an authentication handler earlier in the route (basic_auth)
// that ran once for the request, so asking the same request again always
// gives the same answer; what can revoke it is a new configuration (an
// account removed, an admin no longer listed). So when Caddy runs another
// configuration than the one this handler belongs to, the request's
// credentials are replayed, once per configuration, through the current
// server's routes to <prefix>/api/me, and that answer decides.
type configRecheck struct {
	server *caddyhttp.Server // the server this handler belongs to
	prefix string
	own    identity.Source

	mu      sync.Mutex
	answers map[[32]byte]recheckAnswer // by server and credentials
}

type recheckAnswer struct {
	user identity.User
	err  error
}

const maxRecheckAnswers = 10000

func (c *configRecheck) Recheck(r *http.Request) (identity.User, error) {
	cur := c.currentServer()
	if cur == nil {
		return identity.User{}, identity.ErrUnavailable
	}
	if cur == c.server {
		return c.own.Identify(r) // the configuration that let it in
	}
	h := sha256.New()
	fmt.Fprintf(h, "%p\x00%s\x00%s\x00%s\x00%s", cur, r.Host, r.RemoteAddr, r.Header.Values("Authorization"), r.Header.Values("Cookie"))
	var key [32]byte
	h.Sum(key[:0])
	c.mu.Lock()
	a, ok := c.answers[key]
	c.mu.Unlock()
	if ok {
		return a.user, a.err
	}
	a.user, a.err = c.replay(cur, r)
	if a.err == nil || a.err == identity.ErrUnauthenticated || a.err == identity.ErrForbidden {
		c.mu.Lock()
		if c.answers == nil || len(c.answers) >= maxRecheckAnswers {
			c.answers = map[[32]byte]recheckAnswer{}
		}
		c.answers[key] = a
		c.mu.Unlock()
	}
	return a.user, a.err
}

// currentServer is the server of the running configuration that listens
// where this handler's server did.
func (c *configRecheck) currentServer() *caddyhttp.Server {
	app, err := caddy.ActiveContext().AppIfConfigured("http")
	if err != nil {
		return nil
	}
	httpApp, ok := app.(*caddyhttp.App)
	if !ok {
		return nil
	}
	for _, s := range httpApp.Servers {
		if s == c.server || slices.Equal(s.Listen, c.server.Listen) {
			return s
		}
	}
	return nil
}

func (c *configRecheck) replay(srv *caddyhttp.Server, r *http.Request) (identity.User, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	probe, err := http.NewRequestWithContext(ctx, http.MethodGet, c.prefix+"/api/me", nil)
	if err != nil {
		return identity.User{}, identity.ErrUnavailable
	}
	probe.Header = r.Header.Clone()
	for _, k := range []string{"Upgrade", "Connection", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions", "Last-Event-Id"} {
		probe.Header.Del(k)
	}
	probe.Header.Set("Accept", "application/json")
	probe.Host, probe.RemoteAddr, probe.TLS = r.Host, r.RemoteAddr, r.TLS
	probe.RequestURI = probe.URL.RequestURI()
	rec := &recorder{header: http.Header{}}
	srv.ServeHTTP(rec, probe)
	switch rec.status {
	case http.StatusOK:
		var out struct {
			Data struct {
				User identity.User `json:"user"`
			} `json:"data"`
		}
		if json.Unmarshal(rec.body.Bytes(), &out) != nil || out.Data.User.ID == "" {
			return identity.User{}, identity.ErrUnavailable
		}
		return out.Data.User, nil
	case http.StatusUnauthorized:
		return identity.User{}, identity.ErrUnauthenticated
	case http.StatusForbidden:
		return identity.User{}, identity.ErrForbidden
	default:
		return identity.User{}, identity.ErrUnavailable
	}
}

// recorder keeps a replayed answer (bounded).
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }
func (w *recorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.body.Len() < 64<<10 {
		w.body.Write(b)
	}
	return len(b), nil
}
