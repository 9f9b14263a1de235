package ui

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"html"
	"io/fs"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"
)

func render(t *testing.T, name string, data PageData) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Page(&buf, name, data); err != nil {
		t.Fatalf("Page(%q): %v", name, err)
	}
	return buf.String()
}

var (
	attrRE   = regexp.MustCompile(`(?i)\s(src|href)\s*=\s*"([^"]*)"`)
	scriptRE = regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script>`)
	linkRE   = regexp.MustCompile(`(?i)<link\b[^>]*rel="stylesheet"[^>]*>`)
)

func TestPageInjectsData(t *testing.T) {
	for _, name := range []string{PlayerPage, AdminPage} {
		for _, admin := range []bool{false, true} {
			page := render(t, name, PageData{Prefix: "/rd", UserName: `alice <b>"x"`, Nonce: "n0nce+/=", Admin: admin, SiteName: "Demo CTF"})
			mustContain(t, page, `<body data-prefix="/rd" data-page="`+name+`">`)
			mustContain(t, page, `alice &lt;b&gt;&#34;x&#34;`)
			mustContain(t, page, `>Demo CTF</a>`)
			if strings.Contains(page, "<b>") {
				t.Errorf("%s: user name not escaped", name)
			}
			// The player page also loads viewer.js, between the two.
			want := []string{"common.js", name + ".js"}
			if name == PlayerPage {
				want = []string{"common.js", "viewer.js", name + ".js"}
			}
			scripts := scriptRE.FindAllStringSubmatch(page, -1)
			if len(scripts) != len(want) {
				t.Fatalf("%s: %d script tags, want %d (%v)", name, len(scripts), len(want), want)
			}
			for i, s := range scripts {
				if !strings.Contains(s[1], `src="/rd/static/`+want[i]+`?v=`) {
					t.Errorf("%s: script %d is %s, want %s", name, i, s[0], want[i])
				}
			}
			for _, s := range scripts {
				if got := nonceOf(s[1]); got != "n0nce+/=" {
					t.Errorf("%s: script nonce %q: %s", name, got, s[0])
				}
			}
			if got := nonceOf(linkRE.FindString(page)); got != "n0nce+/=" {
				t.Errorf("%s: stylesheet nonce %q", name, got)
			}
			mustContain(t, page, `src="/rd/static/`+name+`.js?v=`)
			hasAdminLink := strings.Contains(page, `href="/rd/admin"`)
			if hasAdminLink != admin {
				t.Errorf("%s Admin=%v: admin link present=%v", name, admin, hasAdminLink)
			}
		}
	}
}

func TestPageDefaults(t *testing.T) {
	page := render(t, PlayerPage, PageData{})
	mustContain(t, page, `data-prefix="/remote-desktop"`)
	mustContain(t, page, `href="/remote-desktop/static/app.css?v=`)
	mustContain(t, page, `>CTF</a>`)
	if strings.Contains(page, "nonce=") {
		t.Error("empty Nonce should leave out the nonce attribute")
	}
	page = render(t, AdminPage, PageData{Prefix: "/desk/"})
	mustContain(t, page, `data-prefix="/desk"`)
	mustContain(t, page, `src="/desk/static/admin.js?v=`)
}

func TestPageUnknownName(t *testing.T) {
	if err := Page(&bytes.Buffer{}, "nope", PageData{}); err == nil {
		t.Fatal("want an error for an unknown page")
	}
}

// Every static URL the pages reference is in Files, with the right version.
func TestReferencedFilesAreEmbedded(t *testing.T) {
	const prefix = "/remote-desktop"
	for _, name := range []string{PlayerPage, AdminPage} {
		page := render(t, name, PageData{Prefix: prefix, Admin: true})
		n := 0
		for _, m := range attrRE.FindAllStringSubmatch(page, -1) {
			ref := strings.ReplaceAll(m[2], "&amp;", "&")
			u, err := url.Parse(ref)
			if err != nil {
				t.Errorf("%s: bad URL %q: %v", name, ref, err)
				continue
			}
			if !strings.HasPrefix(u.Path, prefix+"/static/") {
				continue
			}
			n++
			file := strings.TrimPrefix(u.Path, prefix+"/static/")
			b, err := fs.ReadFile(Files, file)
			if err != nil {
				t.Errorf("%s references %s, not in Files: %v", name, ref, err)
				continue
			}
			sum := sha256.Sum256(b)
			if got, want := u.Query().Get("v"), hex.EncodeToString(sum[:6]); got != want {
				t.Errorf("%s: %s has version %q, want %q", name, ref, got, want)
			}
		}
		if n < 4 { // app.css, favicon.svg, common.js, <page>.js
			t.Errorf("%s: found %d static references, want at least 4", name, n)
		}
	}
	for _, want := range []string{"app.css", "common.js", "player.js", "admin.js", "favicon.svg"} {
		if _, err := fs.Stat(Files, want); err != nil {
			t.Errorf("Files lacks %s: %v", want, err)
		}
	}
}

// allowedURL lists absolute URLs that are identifiers, not fetched: the SVG
// XML namespace.
var allowedURL = map[string]bool{"http://www.w3.org/2000/svg": true}

var absURLRE = regexp.MustCompile(`(?i)\b(?:https?|wss?|ftp)://[^\s"'()<>]*`)

// Nothing the pages load points off the server: no CDN, no web font.
func TestNoExternalURLs(t *testing.T) {
	check := func(where, text string) {
		for _, u := range absURLRE.FindAllString(text, -1) {
			if !allowedURL[u] {
				t.Errorf("%s: external URL %q", where, u)
			}
		}
		for _, m := range attrRE.FindAllStringSubmatch(text, -1) {
			if v := m[2]; strings.HasPrefix(v, "//") || (!strings.HasPrefix(v, "/") && !strings.HasPrefix(v, "#") && !strings.HasPrefix(v, "{{")) {
				t.Errorf("%s: %s=%q is not a path on this server", where, m[1], v)
			}
		}
		if strings.Contains(text, "@import") {
			t.Errorf("%s: @import", where)
		}
		for _, m := range regexp.MustCompile(`url\(\s*['"]?([^'")]*)`).FindAllStringSubmatch(text, -1) {
			if !strings.HasPrefix(m[1], "data:") {
				t.Errorf("%s: url(%s)", where, m[1])
			}
		}
	}
	err := fs.WalkDir(embedded, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(embedded, p)
		if err != nil {
			return err
		}
		check(p, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{PlayerPage, AdminPage} {
		check(name+" (rendered)", render(t, name, PageData{Admin: true, Nonce: "x"}))
	}
}

// The pages must work under script-src 'self'; style-src 'self': no inline
// code or styles, no eval, no HTML built from strings.
func TestFitsStrictCSP(t *testing.T) {
	inline := []*regexp.Regexp{
		regexp.MustCompile(`(?i)<style\b`),
		regexp.MustCompile(`(?i)\sstyle\s*=`),
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`),
		regexp.MustCompile(`(?i)javascript:`),
	}
	for _, name := range []string{PlayerPage, AdminPage} {
		page := render(t, name, PageData{Admin: true})
		for _, re := range inline {
			if loc := re.FindStringIndex(page); loc != nil {
				t.Errorf("%s: inline %q at %q", name, re, page[loc[0]:min(loc[1]+40, len(page))])
			}
		}
		for _, s := range scriptRE.FindAllStringSubmatch(page, -1) {
			if strings.TrimSpace(s[2]) != "" || !strings.Contains(s[1], "src=") {
				t.Errorf("%s: inline script %q", name, s[0])
			}
		}
	}
	banned := []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('style'", `setAttribute("style"`, "console.log"}
	err := fs.WalkDir(Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || path.Ext(p) != ".js" {
			return err
		}
		b, err := fs.ReadFile(Files, p)
		if err != nil {
			return err
		}
		for _, bad := range banned {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s uses %s", p, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The data-testid hooks the browser tests drive.
func TestTestIDs(t *testing.T) {
	want := map[string][]string{
		PlayerPage: {"start-button", "progress-bar", "stage-label", "stage-list", "connect-button", "countdown", "extend-button", "destroy-button", "alerts", "ended-notice", "idle-view", "creating-view", "ready-view"},
		AdminPage:  {"sessions-table", "hosts-table", "event-feed", "event-stream-state", "event-filter", "alerts"},
	}
	for name, ids := range want {
		page := render(t, name, PageData{})
		for _, id := range ids {
			mustContain(t, page, `data-testid="`+id+`"`)
		}
	}
	js, err := fs.ReadFile(Files, "admin.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"'session-row-'", "'kill-button'", "'admin-extend-button'", "'open-button'", "'host-row-'", "'drain-button'", "'recheck-button'", "'event-item'", "'data-event-type'"} {
		mustContain(t, string(js), id)
	}
}

var nonceRE = regexp.MustCompile(`\snonce="([^"]*)"`)

// nonceOf returns the nonce attribute's value as a browser reads it.
func nonceOf(tag string) string {
	m := nonceRE.FindStringSubmatch(tag)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

func mustContain(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Errorf("missing %q", sub)
	}
}
