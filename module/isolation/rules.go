// Package isolation keeps desktops from reaching anything of ours: other
// desktops (on their host or another), the Docker hosts' own services,
// link-local metadata, the operator's private ranges and, when egress is
// closed, the internet.
//
// Desktops run on one bridge network per host whose Linux bridge has a
// fixed name, so host firewall rules can match it by interface. The rules
// are installed through the Docker API alone (the access the product
// already has): a throwaway container with the host's network and
// CAP_NET_ADMIN chroots into a read-only bind of the host's root and runs
// the host's own iptables, so the rules land in the tables dockerd itself
// uses (legacy or nft). Then a second throwaway container, on the desktop
// network, probes every target a desktop must not reach: the check proves
// isolation instead of assuming it.
package isolation

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// The desktop network on every host and its Linux bridge. A bridge name is
// at most 15 bytes (IFNAMSIZ).
const (
	Network = "rd-desktops"
	Bridge  = "rd-desktops"
)

// Chains the rules live in: flushed and refilled on every install, jumped
// to from DOCKER-USER (forwarded traffic, i.e. to other machines and to
// other containers, published ports included, since Docker enables
// br_netfilter) and from INPUT (the host's own services, e.g. sshd on the
// desktop network's gateway address).
const (
	forwardChain = "RD-DESKTOPS"
	inputChain   = "RD-DESKTOPS-IN"
)

// NetworkOptions are the driver options of Network: the fixed bridge name
// the rules match, and no traffic between containers on it.
var NetworkOptions = map[string]string{
	"com.docker.network.bridge.name":       Bridge,
	"com.docker.network.bridge.enable_icc": "false",
}

// LinkLocal is always closed: cloud metadata (169.254.169.254) lives there.
var LinkLocal = netip.MustParsePrefix("169.254.0.0/16")

// DefaultRanges are the private ranges closed to desktops by default: RFC
// 1918 and carrier-grade NAT (RFC 6598). They cover desktops on the same
// host and on other hosts, and the hosts' own private addresses.
var DefaultRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
}

// Policy is what desktops may reach. Rules apply in this order: replies
// to connections made to a desktop pass; LinkLocal is dropped; Closed is
// dropped; Open passes; DefaultRanges are dropped; everything else passes
// only with Egress.
type Policy struct {
	// Egress keeps the internet (whatever is not closed) open.
	Egress bool
	// Closed lists ranges always closed: every configured host's address
	// (a host may have a public address) and the operator's extra ranges.
	Closed []netip.Prefix
	// Open lists ranges opened inside DefaultRanges (a CTF's challenge
	// network). Closed and LinkLocal win over it.
	Open []netip.Prefix
}

// ClosedRanges is LinkLocal and Closed, sorted and without duplicates;
// IPv6 ranges are left out (the desktop network has no IPv6, and IPv6
// from it is dropped whole).
func (p Policy) ClosedRanges() []netip.Prefix {
	return normalize(append([]netip.Prefix{LinkLocal}, p.Closed...))
}

func normalize(in []netip.Prefix) []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	for _, r := range in {
		r = r.Masked()
		if !r.Addr().Is4() || seen[r] {
			continue
		}
		seen[r] = true
		out = append(out, r)
	}
	sort.Slice(out, func(i, k int) bool {
		if c := out[i].Addr().Compare(out[k].Addr()); c != 0 {
			return c < 0
		}
		return out[i].Bits() < out[k].Bits()
	})
	return out
}

// Key identifies the rules a policy installs (to know when to reinstall).
func (p Policy) Key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "egress=%t closed=%v open=%v", p.Egress, p.ClosedRanges(), normalize(p.Open))
	return b.String()
}

// InstallScript is the shell script that installs the rules with the
// host's iptables. It is idempotent: the chains are replaced atomically by
// iptables-restore (--noflush leaves every other chain, dockerd's included,
// as it is), then the jumps are added unless present. Replies to
// connections made to a desktop (the proxy's) are let through first.
// IPv6 from the bridge is dropped whole when the host has ip6tables.
func InstallScript(p Policy) string {
	var rs strings.Builder
	fmt.Fprintf(&rs, "*filter\n:%s - [0:0]\n:%s - [0:0]\n", forwardChain, inputChain)
	fmt.Fprintf(&rs, "-A %s -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN\n", forwardChain)
	for _, r := range p.ClosedRanges() {
		fmt.Fprintf(&rs, "-A %s -d %s -j DROP\n", forwardChain, r)
	}
	for _, r := range normalize(p.Open) {
		fmt.Fprintf(&rs, "-A %s -d %s -j RETURN\n", forwardChain, r)
	}
	for _, r := range DefaultRanges {
		fmt.Fprintf(&rs, "-A %s -d %s -j DROP\n", forwardChain, r)
	}
	if !p.Egress {
		fmt.Fprintf(&rs, "-A %s -j DROP\n", forwardChain)
	}
	fmt.Fprintf(&rs, "-A %s -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN\n", inputChain)
	fmt.Fprintf(&rs, "-A %s -j DROP\nCOMMIT\n", inputChain)

	return fmt.Sprintf(`set -eu
ipt() { iptables -w 10 "$@"; }
iptables-restore -w 10 --noflush <<'EOF'
%sEOF
ipt -C DOCKER-USER -i %[2]s -j %[3]s 2>/dev/null || ipt -I DOCKER-USER 1 -i %[2]s -j %[3]s
ipt -C INPUT -i %[2]s -j %[4]s 2>/dev/null || ipt -I INPUT 1 -i %[2]s -j %[4]s
if command -v ip6tables >/dev/null 2>&1 && ip6tables -w 10 -S INPUT >/dev/null 2>&1; then
	for c in INPUT FORWARD; do
		ip6tables -w 10 -C $c -i %[2]s -j DROP 2>/dev/null || ip6tables -w 10 -I $c 1 -i %[2]s -j DROP
	done
	echo ipv6-closed
fi
ipt -S %[3]s
ipt -S %[4]s
`, rs.String(), Bridge, forwardChain, inputChain)
}
