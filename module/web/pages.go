package web

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"html/template"
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
	return s.page(w, "player", u)
}

func (s *Server) adminPage(w http.ResponseWriter, r *http.Request, u identity.User) error {
	return s.page(w, "admin", u)
}

func (s *Server) page(w http.ResponseWriter, name string, u identity.User) error {
	var buf bytes.Buffer
	nonce := randomNonce()
	if err := ui.Page(&buf, name, ui.PageData{Prefix: s.Prefix, UserName: display(u), Nonce: nonce, Admin: u.Admin}); err != nil {
		return err
	}
	setPageHeaders(w)
	_, err := w.Write(buf.Bytes())
	return err
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

var messagePage = template.Must(template.New("msg").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Remote Desktop</title>
<link rel="stylesheet" href="{{.Prefix}}/static/app.css"></head>
<body><main class="message"><h1>Remote Desktop</h1><p>{{.Message}}</p>
{{if .Link}}<p><a class="btn btn-primary" href="{{.Link}}">{{.LinkText}}</a></p>{{end}}</main></body></html>
`))

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
	return s.messagePage(w, e.Status, msg)
}

// messagePage answers with a small HTML page saying msg, with a link back
// to the player page.
func (s *Server) messagePage(w http.ResponseWriter, status int, msg string) error {
	var buf bytes.Buffer
	data := map[string]string{"Prefix": s.Prefix, "Message": msg, "Link": s.Prefix, "LinkText": "Back to Remote Desktop"}
	if err := messagePage.Execute(&buf, data); err != nil {
		return err
	}
	setPageHeaders(w)
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}
