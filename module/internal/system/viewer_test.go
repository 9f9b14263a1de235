package system

import (
	"bytes"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ctf-desktops/caddy-remote-desktop/module/internal/e2e"
)

// viewerHead is what Caddy puts first in the head of noVNC's pages: a
// <base> to the shared path and a modulepreload per script.
var viewerHead = regexp.MustCompile(`<base href="(/remote-desktop/novnc/[0-9a-f]{32}/)">(<link rel="modulepreload" href="[^"]+">)*`)

// withoutViewerHead returns noVNC's page as the image has it, and the
// shared base it named ("" if the page has no viewer head).
func withoutViewerHead(page []byte) ([]byte, string) {
	m := viewerHead.FindSubmatchIndex(page)
	if m == nil {
		return page, ""
	}
	base := string(page[m[2]:m[3]])
	return append(append([]byte{}, page[:m[0]]...), page[m[1]:]...), base
}

// noVNC's files are also served at a path named by their content, to any
// logged-in player and never anonymously, byte-identical to the image's
// and cached for good. /api/viewer names them before the player has a
// desktop (the player's page fetches them ahead), and the desktop's
// vnc.html loads them from there, every script preloaded at once.
func TestViewerFilesAreSharedAndCached(t *testing.T) {
	s := newSystem(t, sysConfig{desktop: true})
	tree := trustedTree(t, s.Bed.DesktopImage)
	get := func(user int, method, url string) (*http.Response, []byte) {
		h := map[string]string{}
		if user != 0 {
			h["Cookie"] = "session=" + s.Cookie(user)
		}
		return e2e.Do(t, method, s.Caddy.URL+url, h, "")
	}

	// bob has no desktop: the files of the next one are named anyway.
	code, out, _ := s.req(bob, "GET", "/remote-desktop/api/viewer", "", nil)
	data, _ := out["data"].(map[string]any)
	base, _ := data["base"].(string)
	var files []string
	list, _ := data["files"].([]any)
	for _, f := range list {
		files = append(files, f.(string))
	}
	if code != http.StatusOK || !regexp.MustCompile(`^/remote-desktop/novnc/[0-9a-f]{32}/$`).MatchString(base) {
		t.Fatalf("/api/viewer without a desktop: %d %v", code, out)
	}
	for _, want := range []string{"app/ui.js", "core/rfb.js", "app/styles/base.css"} {
		if !slices.Contains(files, want) {
			t.Errorf("/api/viewer does not list %s: %v", want, files)
		}
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".html") || strings.HasPrefix(f, "utils/") {
			t.Errorf("/api/viewer lists %s, which noVNC's page does not load", f)
		}
	}
	for _, f := range files {
		resp, body := get(bob, "GET", base+f)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, tree[f]) {
			t.Fatalf("%s: %d, %d bytes; want 200 and the image's %d bytes", f, resp.StatusCode, len(body), len(tree[f]))
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "private, max-age=31536000, immutable" {
			t.Fatalf("%s: Cache-Control %q, want it cached for good, privately", f, cc)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s: no nosniff", f)
		}
	}
	t.Logf("%d files at %s, byte-identical to the image's, cached for good", len(files), base)

	digest := strings.TrimSuffix(strings.TrimPrefix(base, "/remote-desktop/novnc/"), "/")
	for _, c := range []struct {
		name         string
		user         int
		method, path string
		want         int
	}{
		{"anonymous", 0, "GET", base + "app/ui.js", http.StatusUnauthorized},
		{"anonymous list", 0, "GET", "/remote-desktop/api/viewer", http.StatusUnauthorized},
		{"unknown digest", bob, "GET", "/remote-desktop/novnc/" + strings.Repeat("0", 32) + "/app/ui.js", http.StatusNotFound},
		{"malformed digest", bob, "GET", "/remote-desktop/novnc/" + strings.ToUpper(digest) + "/app/ui.js", http.StatusNotFound},
		{"no file", bob, "GET", base + "app/nope.js", http.StatusNotFound},
		{"directory", bob, "GET", base + "app", http.StatusNotFound},
		{"traversal", bob, "GET", base + "..%2f..%2fvnc/7/vnc.html", http.StatusBadRequest},
		{"write", bob, "POST", base + "app/ui.js", http.StatusMethodNotAllowed},
	} {
		resp, body := get(c.user, c.method, c.path)
		if resp.StatusCode != c.want && !(c.name == "traversal" && resp.StatusCode == http.StatusNotFound) {
			t.Errorf("%s: %s %s: %d %s, want %d", c.name, c.method, c.path, resp.StatusCode, body, c.want)
		}
		if resp.StatusCode >= 400 && bytes.Contains(body, tree["app/ui.js"][:64]) {
			t.Errorf("%s: refused, but the body is noVNC's", c.name)
		}
	}

	// alice's desktop: its page loads the same shared files.
	s.createReady(alice)
	resp, page := get(alice, "GET", "/remote-desktop/vnc/7/vnc.html")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("vnc.html: %d, Cache-Control %q; want 200, no-store", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
	orig, pageBase := withoutViewerHead(page)
	if pageBase != base {
		t.Fatalf("vnc.html's base is %q, want %q", pageBase, base)
	}
	if !bytes.Equal(orig, tree["vnc.html"]) {
		t.Fatal("vnc.html, without the head Caddy adds, is not the image's")
	}
	if !bytes.Contains(page, []byte(`<head><base href="`+base+`">`)) ||
		!bytes.Contains(page, []byte(`<link rel="modulepreload" href="app/ui.js">`)) ||
		!bytes.Contains(page, []byte(`<link rel="modulepreload" href="core/rfb.js">`)) {
		t.Fatalf("vnc.html's head: %.600s", page)
	}
	if code, out, _ := s.req(alice, "GET", "/remote-desktop/api/viewer", "", nil); code != http.StatusOK || out["data"].(map[string]any)["base"] != base {
		t.Fatalf("/api/viewer with a desktop: %d %v, want base %s", code, out, base)
	}
}
