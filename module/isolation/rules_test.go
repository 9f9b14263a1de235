package isolation

import (
	"net/netip"
	"strings"
	"testing"
)

func TestInstallScript(t *testing.T) {
	p := Policy{Egress: true, Closed: []netip.Prefix{
		netip.MustParsePrefix("203.0.113.9/24"),  // masked to .0/24
		netip.MustParsePrefix("172.30.77.12/32"), // a host
		netip.MustParsePrefix("172.30.77.12/32"), // listed twice
		netip.MustParsePrefix("fd00::/8"),        // IPv6 is closed whole
	}, Open: []netip.Prefix{netip.MustParsePrefix("10.50.0.0/16")}}
	s := InstallScript(p)
	for _, want := range []string{
		"iptables-restore -w 10 --noflush",
		":RD-DESKTOPS - [0:0]\n:RD-DESKTOPS-IN - [0:0]\n",
		// Replies to the proxy's connections first; then link-local and
		// the closed ranges, which an open range cannot reopen; then the
		// private ranges.
		"-A RD-DESKTOPS -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN\n" +
			"-A RD-DESKTOPS -d 169.254.0.0/16 -j DROP\n" +
			"-A RD-DESKTOPS -d 172.30.77.12/32 -j DROP\n" +
			"-A RD-DESKTOPS -d 203.0.113.0/24 -j DROP\n" +
			"-A RD-DESKTOPS -d 10.50.0.0/16 -j RETURN\n" +
			"-A RD-DESKTOPS -d 10.0.0.0/8 -j DROP\n" +
			"-A RD-DESKTOPS -d 172.16.0.0/12 -j DROP\n" +
			"-A RD-DESKTOPS -d 192.168.0.0/16 -j DROP\n" +
			"-A RD-DESKTOPS -d 100.64.0.0/10 -j DROP\n" +
			"-A RD-DESKTOPS-IN -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN\n-A RD-DESKTOPS-IN -j DROP\nCOMMIT\n",
		"ipt -C DOCKER-USER -i rd-desktops -j RD-DESKTOPS 2>/dev/null || ipt -I DOCKER-USER 1 -i rd-desktops -j RD-DESKTOPS",
		"ipt -C INPUT -i rd-desktops -j RD-DESKTOPS-IN 2>/dev/null || ipt -I INPUT 1 -i rd-desktops -j RD-DESKTOPS-IN",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "fd00") || strings.Contains(s, "-A RD-DESKTOPS -j DROP") {
		t.Errorf("IPv6 range, or egress open but everything dropped:\n%s", s)
	}
	p.Egress = false
	closed := InstallScript(p)
	if !strings.Contains(closed, "-A RD-DESKTOPS -d 100.64.0.0/10 -j DROP\n-A RD-DESKTOPS -j DROP\n") {
		t.Errorf("egress closed but the internet is not dropped:\n%s", closed)
	}
	if p.Key() == (Policy{Egress: false, Closed: p.Closed}).Key() || p.Key() == (Policy{Egress: true, Closed: p.Closed, Open: p.Open}).Key() {
		t.Error("different policies share a key")
	}
}

func TestVerdict(t *testing.T) {
	targets := []Target{
		{"gateway sshd", netip.MustParseAddrPort("10.9.0.1:22")},
		{"metadata", Metadata},
		{"desktop abc", netip.MustParseAddrPort("10.9.0.3:6080")},
	}
	all := "blocked 10.9.0.1:22\nblocked 169.254.169.254:80\nblocked 10.9.0.3:6080\n"
	if r := verdict(targets, all, 1, Policy{Egress: true}); !r.Isolated || !strings.Contains(r.Detail, "3 probes") {
		t.Errorf("all blocked: %+v", r)
	}
	r := verdict(targets, "open 10.9.0.1:22\nblocked 169.254.169.254:80\nanswered 10.9.0.3:6080\n", 1, Policy{})
	if r.Isolated || len(r.Reached) != 2 || !strings.Contains(r.Detail, "gateway sshd 10.9.0.1:22 (open)") ||
		!strings.Contains(r.Detail, "desktop abc 10.9.0.3:6080 (answered)") {
		t.Errorf("two reached: %+v", r)
	}
	if r := verdict(targets, "blocked 10.9.0.1:22\n", 1, Policy{}); r.Isolated || !strings.Contains(r.Detail, "no answer for: metadata, desktop abc") {
		t.Errorf("missing lines: %+v", r)
	}
}

func TestProbeScript(t *testing.T) {
	s := ProbeScript([]Target{{"a", netip.MustParseAddrPort("10.9.0.1:22")}, {"b", Metadata}})
	for _, want := range []string{"timeout 2 bash -c \"exec 3<>/dev/tcp/$1/$2\"", "probe 10.9.0.1 22 &\n", "probe 169.254.169.254 80 &\n", "wait\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
}
