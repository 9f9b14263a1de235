package isolation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/ctf-desktops/caddy-remote-desktop/module/docker"
)

// Metadata is the link-local cloud metadata address every check probes.
var Metadata = netip.AddrPortFrom(netip.MustParseAddr("169.254.169.254"), 80)

// probeTimeout bounds one connection attempt: a dropped SYN is retried by
// the kernel after 1 s, so 2 s covers one retry.
const probeTimeout = 2 * time.Second

// Target is one address a desktop must not reach.
type Target struct {
	Name string // what it is, for the report: "gateway sshd"
	Addr netip.AddrPort
}

// Result is a host's isolation check.
type Result struct {
	Isolated bool
	// Detail says what was proved, or exactly what was reachable or why
	// the host cannot be isolated.
	Detail string
	// Reached lists the targets a desktop could reach.
	Reached []string
}

// Host is what the check needs to know about the host it runs on.
type Host struct {
	Image   string // the desktop image: the helpers run from it (it has chroot)
	SSHPort int    // sshd's port, probed on the gateway address
	// Others are addresses of the other hosts' services (sshd), probed
	// from this host's desktop network.
	Others []Target
}

// Prove installs the rules for p on the host behind d (the desktop network
// must exist) and proves them by probing, from a throwaway container on the
// desktop network, the gateway's sshd and Docker ports, every other host's
// sshd, link-local metadata and every desktop already on the network.
func Prove(ctx context.Context, d *docker.Client, h Host, p Policy) Result {
	start := time.Now()
	rootless, err := d.Rootless(ctx)
	if err != nil {
		return Result{Detail: "cannot check: " + err.Error()}
	}
	if rootless {
		return Result{Detail: "rootless Docker: no host firewall rules can be installed, so desktops are NOT isolated from this host's services, other desktops and private networks"}
	}
	sweep(ctx, d)
	net, err := d.InspectNetwork(ctx, Network)
	if err != nil {
		return Result{Detail: "cannot check: " + err.Error()}
	}
	if net.Options["com.docker.network.bridge.name"] != Bridge {
		return Result{Detail: fmt.Sprintf("network %s exists without bridge name %s (made by hand?): remove it so that it is recreated", Network, Bridge)}
	}
	code, out, err := d.RunOnce(ctx, docker.OneShot{
		Name: "rd-firewall-" + suffix(), Image: h.Image, User: "0", NetworkMode: "host", Labels: helperLabels,
		Entrypoint: []string{"chroot", "/host", "/bin/sh", "-c", InstallScript(p)},
		CapAdd:     []string{"NET_ADMIN", "NET_RAW", "SYS_CHROOT"},
		Binds:      []string{"/:/host:ro"},
	})
	switch {
	case err != nil:
		return Result{Detail: "cannot install the firewall rules: " + err.Error()}
	case code != 0:
		return Result{Detail: fmt.Sprintf("cannot install the firewall rules (exit %d): %s", code, lastLines(out, 3))}
	case !strings.Contains(out, "-d "+LinkLocal.String()+" -j DROP"):
		// Never probe metadata unless its rule is in place: the probe
		// would leave the host.
		return Result{Detail: "firewall rules not in place after installing: " + lastLines(out, 3)}
	}

	gw, err := netip.ParseAddr(net.Gateway)
	if err != nil {
		return Result{Detail: fmt.Sprintf("network %s has no gateway address (%q)", Network, net.Gateway)}
	}
	targets := []Target{
		{"gateway sshd", netip.AddrPortFrom(gw, uint16(h.SSHPort))},
		{"gateway dockerd", netip.AddrPortFrom(gw, 2375)},
		{"gateway dockerd-tls", netip.AddrPortFrom(gw, 2376)},
		{"metadata", Metadata},
	}
	targets = append(targets, h.Others...)
	var peers []string
	for id, cidr := range net.Containers {
		if pfx, err := netip.ParsePrefix(cidr); err == nil {
			peers = append(peers, id)
			targets = append(targets, Target{"desktop " + id[:min(12, len(id))], netip.AddrPortFrom(pfx.Addr(), 6080)})
		}
	}
	sort.Slice(targets[4:], func(i, k int) bool { return targets[4+i].Name < targets[4+k].Name })
	code, out, err = d.RunOnce(ctx, docker.OneShot{
		Name: "rd-probe-" + suffix(), Image: h.Image, User: "0", NetworkMode: Network, Labels: helperLabels,
		Entrypoint: []string{"chroot", "/host", "/bin/bash", "-c", ProbeScript(targets)},
		CapAdd:     []string{"SYS_CHROOT"},
		Binds:      []string{"/:/host:ro"},
	})
	if err != nil || code != 0 {
		return Result{Detail: fmt.Sprintf("cannot probe from the desktop network (exit %d, %v): %s", code, err, lastLines(out, 3))}
	}
	res := verdict(targets, out, len(peers), p)
	if res.Isolated {
		res.Detail += fmt.Sprintf(" (installed and proved in %.1fs)", time.Since(start).Seconds())
	}
	return res
}

// ProbeScript tries every target at once from bash (/dev/tcp) with a
// timeout and prints one line per target: "blocked", or "open"/"answered"
// (a refusal means the SYN got through) with the address.
func ProbeScript(targets []Target) string {
	var b strings.Builder
	fmt.Fprintf(&b, `probe() {
	local err
	if err=$(timeout %d bash -c "exec 3<>/dev/tcp/$1/$2" 2>&1); then echo "open $1:$2"
	elif [ -z "$err" ] || [[ $err != *refused* ]]; then echo "blocked $1:$2"
	else echo "answered $1:$2"; fi
}
`, int(probeTimeout/time.Second))
	for _, t := range targets {
		fmt.Fprintf(&b, "probe %s %d &\n", t.Addr.Addr(), t.Addr.Port())
	}
	b.WriteString("wait\n")
	return b.String()
}

func verdict(targets []Target, out string, peers int, p Policy) Result {
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if state, addr, ok := strings.Cut(strings.TrimSpace(l), " "); ok {
			lines[addr] = state
		}
	}
	var reached, missing []string
	for _, t := range targets {
		switch lines[t.Addr.String()] {
		case "blocked":
		case "":
			missing = append(missing, t.Name)
		default:
			reached = append(reached, fmt.Sprintf("%s %s (%s)", t.Name, t.Addr, lines[t.Addr.String()]))
		}
	}
	if len(missing) > 0 {
		return Result{Detail: "probe gave no answer for: " + strings.Join(missing, ", ")}
	}
	if len(reached) > 0 {
		return Result{Reached: reached, Detail: "NOT isolated: a desktop reached " + strings.Join(reached, ", ")}
	}
	egress := "internet open"
	if !p.Egress {
		egress = "internet closed"
	}
	return Result{Isolated: true, Detail: fmt.Sprintf("isolated: %d probes from the desktop network blocked (gateway sshd and dockerd, metadata, %d host sshd addresses, %d desktops); %s",
		len(targets), len(targets)-4-peers, peers, egress)}
}

// helperLabels mark the throwaway containers, so that those a crash or a
// dockerd restart left behind are found again.
var helperLabels = map[string]string{"io.ctf-remote-desktop.isolation-helper": "true"}

// staleHelper is how old a stopped helper must be before sweep removes it:
// a younger one may be another proof's, its output not read yet.
const staleHelper = 5 * time.Minute

// sweep removes stopped helpers left behind; failures only mean they stay
// until the next proof.
func sweep(ctx context.Context, d *docker.Client) {
	cs, err := d.List(ctx, helperLabels, true)
	if err != nil {
		return
	}
	for _, c := range cs {
		if !c.Running && time.Since(c.Created) > staleHelper {
			_ = d.Remove(ctx, c.ID, 0)
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

func suffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
