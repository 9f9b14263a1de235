package web

import (
	"bytes"
	"context"
	"html"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
)

// SharedNoVNC is a NoVNC whose file sets are named by their content (the
// fs.FS it returns has a Digest method), so that they can also be served
// at <prefix>/novnc/<digest>/, a path shared by every desktop with the
// same files and cached by browsers for good. A player's page fetches
// them while the player has no desktop yet: a desktop opened later loads
// noVNC from the browser's cache, not over the network.
type SharedNoVNC interface {
	NoVNC
	// Shared returns the files with that digest, if known.
	Shared(digest string) (fs.FS, bool)
	// Current returns the files the next desktop most likely uses.
	Current(ctx context.Context) (fs.FS, error)
}

// digested is a file set named by its content.
type digested interface {
	fs.FS
	Digest() string
	Names() []string
}

// viewerCurrentTimeout bounds /api/viewer's wait for the current files
// (read from the image the first time).
const viewerCurrentTimeout = 30 * time.Second

// immutable is the Cache-Control of files named by their content. Private:
// they are served to logged-in players only, so no shared cache keeps them.
const immutable = "private, max-age=31536000, immutable"

// sharedNoVNC serves <prefix>/novnc/<digest>/<name> to any logged-in user:
// noVNC's own files, the same for every desktop, and no desktop's data.
func (s *Server) sharedNoVNC(w http.ResponseWriter, r *http.Request, sub string) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return errMethod
	}
	digest, name, ok := strings.Cut(strings.TrimPrefix(sub, "/novnc/"), "/")
	if !ok || !validDigest(digest) {
		return errNotFound
	}
	if _, err := s.Identity.Identify(r); err != nil {
		return identityError(err)
	}
	shared, ok := s.NoVNC.(SharedNoVNC)
	if !ok {
		return errNotFound
	}
	files, ok := shared.Shared(digest)
	if !ok {
		return errNotFound
	}
	return noVNCFile(w, r, files, name, immutable)
}

// noVNCPage serves one of noVNC's pages (vnc.html) for a desktop, its
// relative URLs sent to the shared path. The page is the desktop's own
// address, so it is never cached.
func (s *Server) noVNCPage(w http.ResponseWriter, r *http.Request, files digested, name string) error {
	page, err := fs.ReadFile(files, name)
	if err != nil {
		return errNotFound
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(withHead(page, viewerHead(s.sharedBase(files.Digest()), files.Names()))))
	return nil
}

func validDigest(d string) bool {
	if len(d) != 32 {
		return false
	}
	for _, c := range d {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// viewerFiles is /api/viewer: where the noVNC files of the player's next
// (or current) desktop are, and which of them the viewer loads, for the
// player's page to fetch ahead. 404 when there is no such shared set
// (novnc_root, unsafe_container_http, no healthy host yet).
func (s *Server) viewerFiles(w http.ResponseWriter, r *http.Request, u identity.User) error {
	shared, ok := s.NoVNC.(SharedNoVNC)
	if !ok || s.ContainerHTTP {
		return errNoViewerFiles
	}
	var files fs.FS
	var err error
	if t, live := s.Sessions.Lookup(u.ID); live {
		files, err = s.NoVNC.Files(r.Context(), t)
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), viewerCurrentTimeout)
		files, err = shared.Current(ctx)
		cancel()
	}
	d, ok := files.(digested)
	if err != nil || !ok {
		if ce := s.Logger.Check(zap.DebugLevel, "noVNC's files for the player's page not known"); ce != nil {
			ce.Write(zap.String("user", u.ID), zap.Error(err))
		}
		return errNoViewerFiles
	}
	var load []string
	for _, n := range d.Names() {
		if viewerLoads(n) {
			load = append(load, n)
		}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"base": s.sharedBase(d.Digest()), "files": load})
}

var errNoViewerFiles = errorf(http.StatusNotFound, "novnc_unavailable", "noVNC's files are not known yet")

func (s *Server) sharedBase(digest string) string { return s.Prefix + "/novnc/" + digest + "/" }

// viewerLoads reports whether noVNC's page loads the file when it opens: its
// scripts, styles, fonts and images (not its tools, tests, sounds or
// translations, which are fetched only when used).
func viewerLoads(name string) bool {
	if strings.HasPrefix(name, "utils/") || strings.HasPrefix(name, "tests/") || strings.HasPrefix(name, "docs/") {
		return false
	}
	switch path.Ext(name) {
	case ".js", ".css", ".svg", ".woff", ".woff2":
		return true
	}
	return false
}

// viewerHead is what noVNC's page gets first in its head: a <base>, so
// that the files it loads by relative URL come from the shared, cached
// path, and a modulepreload of every script, so that the browser fetches
// and compiles them all at once instead of one import depth at a time.
func viewerHead(base string, names []string) string {
	var b strings.Builder
	b.WriteString(`<base href="` + html.EscapeString(base) + `">`)
	for _, n := range names {
		if viewerLoads(n) && path.Ext(n) == ".js" {
			b.WriteString(`<link rel="modulepreload" href="` + html.EscapeString(n) + `">`)
		}
	}
	return b.String()
}

// withHead returns an HTML page with tags first in its head. A page
// without a <head> is left as it is.
func withHead(page []byte, tags string) []byte {
	lower := asciiLower(page) // same length as page, unlike bytes.ToLower
	i := 0
	for {
		j := bytes.Index(lower[i:], []byte("<head"))
		if j < 0 {
			return page
		}
		i += j
		if next := lower[i+len("<head"):]; len(next) > 0 && (next[0] == '>' || next[0] == ' ' || next[0] == '\t' || next[0] == '\n' || next[0] == '\r') {
			break // not <header>
		}
		i += len("<head")
	}
	end := bytes.IndexByte(page[i:], '>')
	if end < 0 {
		return page
	}
	at := i + end + 1
	out := make([]byte, 0, len(page)+len(tags))
	out = append(out, page[:at]...)
	out = append(out, tags...)
	return append(out, page[at:]...)
}

// asciiLower lowers ASCII letters only, so offsets in its result are
// offsets in b.
func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}
