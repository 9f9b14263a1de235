package web

import (
	"strings"
	"testing"
)

func TestWithHead(t *testing.T) {
	const tags = `<base href="/p/novnc/d/">`
	for _, c := range []struct{ in, want string }{
		{"<html><head><title>x</title></head></html>", `<html><head><base href="/p/novnc/d/"><title>x</title></head></html>`},
		{"<HTML><HEAD lang=en>\n<title>", "<HTML><HEAD lang=en>" + tags + "\n<title>"},
		// <header> is not <head>.
		{"<body><header>h</header><head></head>", "<body><header>h</header><head>" + tags + "</head>"},
		{"<body>no head</body>", "<body>no head</body>"},
		{"<head", "<head"},
		// Letters whose lower case has another length do not move it.
		{"<!-- ȺȺȺȺȺȺȺȺ K --><HEAD><title>", "<!-- ȺȺȺȺȺȺȺȺ K --><HEAD>" + tags + "<title>"},
	} {
		if got := string(withHead([]byte(c.in), tags)); got != c.want {
			t.Errorf("withHead(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestViewerHeadAndFiles(t *testing.T) {
	head := viewerHead(`/p/novnc/0123/`, []string{"app/ui.js", "app/styles/base.css", "utils/x.js", "vnc.html", `app/"q.js`})
	want := `<base href="/p/novnc/0123/"><link rel="modulepreload" href="app/ui.js"><link rel="modulepreload" href="app/&#34;q.js">`
	if head != want {
		t.Fatalf("viewerHead = %q, want %q", head, want)
	}
	for name, want := range map[string]bool{
		"app/ui.js": true, "core/rfb.js": true, "app/styles/base.css": true, "app/styles/Orbitron700.woff": true,
		"app/images/info.svg": true, "vnc.html": false, "utils/novnc_proxy": false, "utils/genkeysymdef.js": false,
		"app/locale/de.json": false, "app/sounds/bell.oga": false, "tests/test.rfb.js": false,
	} {
		if viewerLoads(name) != want {
			t.Errorf("viewerLoads(%q) = %v, want %v", name, !want, want)
		}
	}
	for d, want := range map[string]bool{
		strings.Repeat("a", 32): true, "0123456789abcdef0123456789abcdef": true,
		strings.Repeat("A", 32): false, strings.Repeat("a", 31): false, strings.Repeat("a", 33): false,
		"../" + strings.Repeat("a", 29): false, "": false,
	} {
		if validDigest(d) != want {
			t.Errorf("validDigest(%q) = %v, want %v", d, !want, want)
		}
	}
}
