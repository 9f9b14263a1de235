package remotedesktop

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
)

func init() {
	caddy.RegisterModule(CTFdIdentity{})
	caddy.RegisterModule(CaddyIdentity{})
}

// Identifier is what an identity source module provides to the handler.
type Identifier = identity.Source

// CTFdIdentity makes CTFd the authority on who a request belongs to: the
// player's CTFd session cookie is shown to CTFd's /api/v1/users/me, and the
// admin view of that user (admin? banned? verified?) is read with an admin
// API token.
type CTFdIdentity struct {
	// CTFd's base URL as Caddy reaches it, e.g. http://ctfd:8000. Required.
	URL string `json:"url,omitempty"`

	// An admin account's API token, e.g. {env.CTFD_ADMIN_TOKEN}. Required.
	// It is sent only to CTFd, never logged.
	AdminToken string `json:"admin_token,omitempty"`

	// Name of CTFd's session cookie. Default: session.
	CookieName string `json:"cookie_name,omitempty"`

	// How long CTFd's answer for one session cookie is reused. A logout or
	// a ban takes effect within this time. Default: 10s.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// Bound on each call to CTFd; past it the request gets a 503. Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Refuse users whose email is not verified. Turn it on when CTFd's
	// verify_emails setting is on. Default: false.
	RequireVerified bool `json:"require_verified,omitempty"`

	source *identity.CTFd
}

// CaddyModule returns the Caddy module information.
func (CTFdIdentity) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "remote_desktop.identity.ctfd",
		New: func() caddy.Module { return new(CTFdIdentity) },
	}
}

// Provision sets up the CTFd client.
func (c *CTFdIdentity) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	raw := repl.ReplaceKnown(c.URL, "")
	token := repl.ReplaceKnown(c.AdminToken, "")
	if raw == "" {
		return fmt.Errorf("identity ctfd: url is required")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("identity ctfd: url %q is not http(s)://host[:port]", raw)
	}
	if token == "" {
		return fmt.Errorf("identity ctfd: admin_token is required (is its environment variable set?)")
	}
	c.source = &identity.CTFd{
		BaseURL:         u,
		AdminToken:      token,
		CookieName:      c.CookieName,
		CacheTTL:        time.Duration(c.CacheTTL),
		Timeout:         time.Duration(c.Timeout),
		RequireVerified: c.RequireVerified,
		// Caddy's client_ip honours the server's trusted_proxies.
		ClientIP: func(r *http.Request) string {
			ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
			return ip
		},
	}
	return nil
}

// Identify implements identity.Source.
func (c *CTFdIdentity) Identify(r *http.Request) (identity.User, error) {
	return c.source.Identify(r)
}

// UnmarshalCaddyfile sets up the source:
//
//	identity ctfd {
//	    url              <ctfd base url>
//	    admin_token      <token>
//	    cookie_name      <name>
//	    cache_ttl        <duration>
//	    timeout          <duration>
//	    require_verified
//	}
func (c *CTFdIdentity) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()         // source name
	if d.NextArg() { // `identity ctfd <url>` shorthand
		c.URL = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch key := d.Val(); key {
		case "url":
			err = stringArg(d, &c.URL)
		case "admin_token":
			err = stringArg(d, &c.AdminToken)
		case "cookie_name":
			err = stringArg(d, &c.CookieName)
		case "cache_ttl":
			err = durationArg(d, &c.CacheTTL)
		case "timeout":
			err = durationArg(d, &c.Timeout)
		case "require_verified":
			c.RequireVerified = true
			err = noArgs(d)
		default:
			return d.Errf("unrecognized identity ctfd option '%s'", key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// CaddyIdentity takes the user that Caddy's own authentication handler (for
// example basic_auth) established earlier in the route. It is meant for
// demos and for deployments without CTFd.
type CaddyIdentity struct {
	// User ids that are admins.
	Admins []string `json:"admins,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (CaddyIdentity) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "remote_desktop.identity.caddy",
		New: func() caddy.Module { return new(CaddyIdentity) },
	}
}

// Identify implements identity.Source.
func (c *CaddyIdentity) Identify(r *http.Request) (identity.User, error) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return identity.User{}, identity.ErrUnavailable
	}
	id, _ := repl.GetString("http.auth.user.id")
	if id == "" {
		return identity.User{}, identity.ErrUnauthenticated
	}
	if !identity.ValidID(id) {
		return identity.User{}, fmt.Errorf("%w: user id %q has characters a session cannot be named with", identity.ErrForbidden, id)
	}
	return identity.User{ID: id, Name: id, Admin: slices.Contains(c.Admins, id)}, nil
}

// UnmarshalCaddyfile sets up the source:
//
//	identity caddy {
//	    admins <user id>...
//	}
func (c *CaddyIdentity) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // source name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch key := d.Val(); key {
		case "admins":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			c.Admins = append(c.Admins, args...)
		default:
			return d.Errf("unrecognized identity caddy option '%s'", key)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*CTFdIdentity)(nil)
	_ caddyfile.Unmarshaler = (*CTFdIdentity)(nil)
	_ Identifier            = (*CTFdIdentity)(nil)
	_ caddyfile.Unmarshaler = (*CaddyIdentity)(nil)
	_ Identifier            = (*CaddyIdentity)(nil)
)
