package remotedesktop

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// RateLimit bounds how often one player creates or destroys a desktop,
// each of which costs a Docker host a container create/start or remove.
// A player may act Burst times at once, then once more every Interval;
// asking for a create that returns the existing session, or a destroy
// when there is none, costs nothing. The default lets a player restart a
// broken desktop several times in a row and never stops normal play; a
// create/destroy loop gets 429 with Retry-After and a message on the
// player page.
type RateLimit struct {
	// Actions allowed at once. Default: 10.
	Burst int `json:"burst,omitempty"`

	// One more action is allowed every interval. Default: 1m.
	Interval caddy.Duration `json:"interval,omitempty"`

	// Turn the limit off. Default: false.
	Off bool `json:"off,omitempty"`
}

// Defaults of the abuse bounds.
const (
	defaultRateBurst          = 10
	defaultRateInterval       = time.Minute
	defaultAuditRetentionDays = 90
)

func (a *App) setAbuseDefaults() {
	if a.RateLimit == nil {
		a.RateLimit = &RateLimit{}
	}
	if a.RateLimit.Burst == 0 {
		a.RateLimit.Burst = defaultRateBurst
	}
	setDuration(&a.RateLimit.Interval, defaultRateInterval)
	if a.AuditRetentionDays == 0 {
		a.AuditRetentionDays = defaultAuditRetentionDays
	}
}

func (a *App) validateAbuse() error {
	if r := a.RateLimit; r != nil && (r.Burst < 0 || r.Interval < 0) {
		return fmt.Errorf("rate_limit: burst and interval must not be negative, got %d and %v", r.Burst, time.Duration(r.Interval))
	}
	if a.AuditRetentionDays < 0 {
		return fmt.Errorf("audit_retention_days: must not be negative, got %d", a.AuditRetentionDays)
	}
	return nil
}

// rate is the limiter's setting: burst 0 means off.
func (a *App) rate() (burst int, every time.Duration) {
	if a.RateLimit == nil || a.RateLimit.Off {
		return 0, 0
	}
	return a.RateLimit.Burst, time.Duration(a.RateLimit.Interval)
}

// unmarshalRateLimit reads `rate_limit <burst> <interval>` or `rate_limit off`.
func (a *App) unmarshalRateLimit(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == "off":
		a.RateLimit = &RateLimit{Off: true}
		return nil
	case len(args) != 2:
		return d.Err("rate_limit: want <burst> <interval> (e.g. 10 1m) or off")
	}
	r := &RateLimit{}
	if _, err := fmt.Sscan(args[0], &r.Burst); err != nil || r.Burst < 1 {
		return d.Errf("rate_limit: burst %q is not a positive whole number", args[0])
	}
	dur, err := caddy.ParseDuration(args[1])
	if err != nil || dur <= 0 {
		return d.Errf("rate_limit: interval %q is not a positive duration (e.g. 1m)", args[1])
	}
	r.Interval = caddy.Duration(dur)
	a.RateLimit = r
	return nil
}
