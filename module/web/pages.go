package web

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"path"

	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
	"github.com/ctf-desktops/caddy-remote-desktop/module/ui"
)

const pageCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'"

func (s *Server) playerPage(w http.ResponseWriter, r *http.Request, u identity.User) error {
	return s.page(w, r, ui.PlayerPage, u)
}

func (s *Server) adminPage(w http.ResponseWriter, r *http.Request, u identity.User) error {
	return s.page(w, r, ui.AdminPage, u)
}

func (s *Server) page(w http.ResponseWriter, r *http.Request, name string, u identity.User) error {
	var buf bytes.Buffer
	nonce := randomNonce()
	data := s.pageData(r)
	data.UserName, data.Nonce, data.Admin = display(u), nonce, u.Admin
	if err := ui.Page(&buf, name, data); err != nil {
		return err
	}
	setPageHeaders(w)
	_, err := w.Write(buf.Bytes())
	return err
}

// pageData is what every page shows: the CTF's name and navbar links.
func (s *Server) pageData(r *http.Request) ui.PageData {
	d := ui.PageData{Prefix: s.Prefix, Links: s.Links}
	if s.Brand != nil {
		d.SiteName = s.Brand(r.Context())
	}
	return d
}

func setPageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
}

func randomNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b)
}

var staticFS = ui.Files

// static serves the pages' embedded CSS and scripts. They hold nothing
// private, so no login is needed.
func (s *Server) static(w http.ResponseWriter, r *http.Request, name string) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return errMethod
	}
	if name == "" || path.Clean(name) != name || !fs.ValidPath(name) {
		return errNotFound
	}
	if _, err := fs.Stat(staticFS, name); err != nil {
		return errNotFound
	}
	// The pages link every file with ?v=<content hash>.
	cc := "public, max-age=300"
	if r.URL.Query().Has("v") {
		cc = "public, max-age=31536000, immutable"
	}
	w.Header().Set("Cache-Control", cc)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeFileFS(w, r, staticFS, name)
	return nil
}

// identityPage answers a page request whose identity failed: a login
// redirect, or a clear page saying what is wrong.
func (s *Server) identityPage(w http.ResponseWriter, r *http.Request, err error) error {
	e := identityError(err)
	if errors.Is(err, identity.ErrUnauthenticated) && s.LoginURL != "" {
		http.Redirect(w, r, s.LoginURL+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
		return nil
	}
	msg := e.Message
	if e.Status == http.StatusServiceUnavailable {
		msg = "The login service is unavailable right now. Try again in a moment."
		w.Header().Set("Retry-After", "5")
	}
	return s.messagePage(w, r, e.Status, msg)
}

var headings = map[int]string{
	http.StatusUnauthorized:       "Not logged in",
	http.StatusForbidden:          "Access denied",
	http.StatusNotFound:           "Not found",
	http.StatusServiceUnavailable: "Temporarily unavailable",
}

// messagePage answers with a page saying msg, in the player page's layout
// (navbar, stylesheet), with a link back to the player page.
func (s *Server) messagePage(w http.ResponseWriter, r *http.Request, status int, msg string) error {
	var buf bytes.Buffer
	data := s.pageData(r)
	data.Status, data.Message, data.Nonce = status, msg, randomNonce()
	data.Heading = headings[status]
	if err := ui.Page(&buf, ui.MessagePage, data); err != nil {
		return err
	}
	setPageHeaders(w)
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}
