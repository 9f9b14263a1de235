package e2e

import (
	"fmt"
	"strings"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/testbed"
)

// Caddyfile builds the configuration of a system test for StartCaddy: the
// module's app on the test bed's hosts, and a site on {{PORT}} whose
// remote_desktop handler asks Identity who a request is. System.Caddyfile
// returns one filled in for a System.
type Caddyfile struct {
	Bed      *testbed.Testbed
	Instance string
	// HostsFile is the app's hosts_file. System.Caddyfile sets a file that
	// does not exist, so that only the inline hosts count.
	HostsFile string
	// Image, if set, adds an inline host block running it for each of the
	// bed's hosts, with HostLines in each.
	Image     string
	HostLines []string
	// Global: more lines for the global options block (storage ...).
	Global []string
	// App: more lines for the remote_desktop app block (probe_interval 2s,
	// shutdown_policy destroy ...), in order; an entry may hold several.
	App []string
	// Site: lines of the site before its handler (other handlers, routes).
	Site []string
	// Identity is the handler's identity block (CTFdIdentity).
	Identity string
	// Handler: more lines for the handler block (brand, links ...).
	Handler []string
	// Respond: the site's lines after the handler; default
	// `respond "ctfd itself" 200`.
	Respond []string
	// Site2 adds a second site on {{PORT2}}: the handler with Identity
	// only, then `respond 404`.
	Site2 bool
}

// CTFdIdentity is an identity block asking the CTFd stand-in; timeout ""
// leaves the module's default.
func CTFdIdentity(c *CTFd, cacheTTL, timeout string) string {
	s := fmt.Sprintf("identity ctfd {\n\t\t\turl %s\n\t\t\tadmin_token %s\n\t\t\tcache_ttl %s\n", c.URL(), c.AdminToken(), cacheTTL)
	if timeout != "" {
		s += "\t\t\ttimeout " + timeout + "\n"
	}
	return s + "\t\t}"
}

// String is the Caddyfile's text, with StartCaddy's placeholders.
func (c Caddyfile) String() string {
	var b strings.Builder
	line := func(indent, s string) {
		if s = strings.TrimSpace(s); s != "" {
			b.WriteString(indent + s + "\n")
		}
	}
	b.WriteString("{\n\tadmin {{ADMIN}}\n")
	for _, l := range c.Global {
		line("\t", l)
	}
	b.WriteString("\tremote_desktop {\n")
	line("\t\t", "hosts_file "+c.HostsFile)
	if c.Image != "" {
		for _, h := range c.Bed.Hosts {
			fmt.Fprintf(&b, "\t\thost %s {\n\t\t\tuser %s\n", h.IP, h.User)
			if h.SSHPort > 0 {
				fmt.Fprintf(&b, "\t\t\tport %d\n", h.SSHPort)
			}
			line("\t\t\t", "docker_image "+c.Image)
			for _, l := range c.HostLines {
				line("\t\t\t", l)
			}
			b.WriteString("\t\t}\n")
		}
	}
	line("\t\t", "known_hosts "+c.Bed.KnownHosts)
	line("\t\t", "ssh_key "+c.Bed.SSHKey)
	line("\t\t", "instance "+c.Instance)
	for _, l := range c.App {
		line("\t\t", l)
	}
	b.WriteString("\t}\n}\nhttp://127.0.0.1:{{PORT}} {\n")
	for _, l := range c.Site {
		line("\t", l)
	}
	b.WriteString("\tremote_desktop {\n")
	line("\t\t", c.Identity)
	for _, l := range c.Handler {
		line("\t\t", l)
	}
	b.WriteString("\t}\n")
	respond := c.Respond
	if respond == nil {
		respond = []string{`respond "ctfd itself" 200`}
	}
	for _, l := range respond {
		line("\t", l)
	}
	b.WriteString("}\n")
	if c.Site2 {
		b.WriteString("http://127.0.0.1:{{PORT2}} {\n\tremote_desktop {\n")
		line("\t\t", c.Identity)
		b.WriteString("\t}\n\trespond 404\n}\n")
	}
	return b.String()
}
