package remotedesktop

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/config"
	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
	"github.com/ctf-desktops/caddy-remote-desktop/module/hosts"
	"github.com/ctf-desktops/caddy-remote-desktop/module/isolation"
	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// isolationRecheck is how long a host's isolation proof stands while the
// host stays healthy. A host that was unhealthy (down, rebooted: its rules
// may be gone) is proved again when it comes back, and an admin's manual
// check always proves again.
const isolationRecheck = 10 * time.Minute

// proofs remembers each host's last isolation proof: it costs two
// throwaway containers, too much for every probe_interval.
type proofs struct {
	mu  sync.Mutex
	byH map[string]proof
}

type proof struct {
	key   string
	at    time.Time
	check hosts.Check
}

// prepare returns the hosts.Prepare of this runtime: it makes the desktop
// network on a host that passed its checks, installs the isolation rules
// and proves them (force: even when a recent proof stands).
func (r *runtime) prepare(force bool) hosts.Prepare {
	return func(ctx context.Context, h *hosts.Host, d *docker.Client) ([]hosts.Check, error) {
		if err := d.EnsureNetwork(ctx, session.SessionNetwork, session.NetworkOptions); err != nil {
			return nil, err
		}
		r.mu.Lock()
		a := r.settings
		r.mu.Unlock()
		policy, ih := isolationFor(a, h.Config())
		key := fmt.Sprintf("%s|%s|%v", policy.Key(), ih.Image, ih.Others)
		wasHealthy := r.hosts.Healthy(h.Name())

		r.proofs.mu.Lock()
		p, ok := r.proofs.byH[h.Name()]
		r.proofs.mu.Unlock()
		if !force && ok && wasHealthy && p.key == key && time.Since(p.at) < isolationRecheck {
			return []hosts.Check{p.check}, nil
		}
		pctx, cancel := proofContext(ctx)
		res := isolation.Prove(pctx, d, ih, policy)
		cut := pctx.Err() != nil
		cancel()
		c := hosts.Check{Name: "isolation", OK: res.Isolated, Detail: res.Detail, Warn: a.Isolation == "warn"}
		if !cut {
			r.proofs.mu.Lock()
			if r.proofs.byH == nil {
				r.proofs.byH = map[string]proof{}
			}
			r.proofs.byH[h.Name()] = proof{key: key, at: time.Now(), check: c}
			r.proofs.mu.Unlock()
		}
		return []hosts.Check{c}, nil
	}
}

// proofTimeout bounds an isolation proof. It may outlast the host check's
// own deadline: two container starts take seconds on a loaded host (19-21 s
// measured at a load average of 24 on 2 cores), and a proof cut short would
// take a healthy host out of rotation. Shutting down still ends it.
const proofTimeout = 90 * time.Second

func proofContext(ctx context.Context) (context.Context, context.CancelFunc) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), proofTimeout)
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			cancel()
		}
	})
	return pctx, func() { stop(); cancel() }
}

// isolationFor is the policy and probe targets of host hc under a's
// settings: every configured host's addresses are closed, and every other
// host's sshd is probed (this host's own sshd is probed on its gateway
// and its bind address).
func isolationFor(a *App, hc config.Host) (isolation.Policy, isolation.Host) {
	closed, _ := parseRanges(a.ClosedRanges) // validated at provisioning
	open, _ := parseRanges(a.OpenRanges)
	p := isolation.Policy{Egress: a.Egress != "closed", Closed: closed, Open: open}
	ih := isolation.Host{Image: hc.DockerImage, SSHPort: hc.Port}
	for _, o := range a.settings.WorkspaceHosts {
		for _, ip := range hostIPs(o) {
			p.Closed = append(p.Closed, netip.PrefixFrom(ip, 32))
			name := "host " + o.Hostname + " sshd"
			if o.Hostname == hc.Hostname {
				name = "own sshd on " + ip.String()
			}
			ih.Others = append(ih.Others, isolation.Target{Name: name, Addr: netip.AddrPortFrom(ip, uint16(o.Port))})
		}
	}
	sort.Slice(ih.Others, func(i, k int) bool { return ih.Others[i].Addr.Compare(ih.Others[k].Addr) < 0 })
	return p, ih
}

// hostIPs are the IPv4 addresses of a host that a desktop could use to
// reach it (a container's loopback is its own: left out).
func hostIPs(h config.Host) []netip.Addr {
	var out []netip.Addr
	for _, s := range []string{h.Hostname, h.PubHostname, h.BindAddress} {
		ip, err := netip.ParseAddr(s)
		if err != nil || !ip.Is4() || ip.IsLoopback() || ip.IsUnspecified() {
			continue
		}
		dup := false
		for _, o := range out {
			dup = dup || o == ip
		}
		if !dup {
			out = append(out, ip)
		}
	}
	return out
}

func parseRanges(in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range in {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			if ip, ierr := netip.ParseAddr(strings.TrimSpace(s)); ierr == nil && ip.Is4() {
				p, err = netip.PrefixFrom(ip, 32), nil
			}
		}
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("%q is not an IPv4 range (CIDR, e.g. 10.1.0.0/16)", s)
		}
		out = append(out, p)
	}
	return out, nil
}
