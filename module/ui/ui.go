// Package ui holds the browser side of the remote desktop module: the player
// page, the admin dashboard, and the static files they load. Everything is
// embedded; nothing is fetched from another origin, and the pages run under
//
//	default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;
//	connect-src 'self'; frame-ancestors 'self'
//
// so there are no inline scripts, styles or style attributes. The page's
// path prefix reaches the scripts through <body data-prefix="...">.
//
// What the scripts expect of the server, all below the prefix:
//
//   - Every API answer is JSON, {"success": true, "data": ...} or, with a
//     4xx/5xx status, {"success": false, "error": {"code", "message"}}.
//     A 401 is shown as "You are not logged in" with a link to /login; a
//     503 without a JSON error, or with an error code containing "auth",
//     "login", "identity" or "ctfd", as "The login service is unavailable".
//     Any other error shows its message (and code).
//   - Requests are same-origin fetches with the session cookie
//     (credentials: 'same-origin') and "Accept: application/json". POSTs
//     carry "Content-Type: application/json" and a JSON body ({} when there
//     is nothing to say), so the server may refuse other content types as
//     a CSRF guard; browsers also send an Origin header on them.
//   - The Date header of API answers is used to correct the client clock;
//     countdowns use remaining_seconds when present.
//   - Player: GET /api/status on load and every 5 s once ready (the first
//     poll after ready starts the timer); POST /api/create, then GET
//     /api/creation-status every 500 ms until ready, failed, destroyed or
//     expired; POST /api/extend; POST /api/destroy.
//   - Admin: GET /admin/api/containers every 5 s, /admin/api/hosts every
//     10 s, both also soon after a matching event; the figures at the top
//     are their "summary" (the numbers the metrics export); a
//     session_timer_started or session_extended event's data.expires_at
//     sets that row's countdown at once; GET
//     /admin/api/events/recent?limit=100 once, then the SSE stream
//     /admin/api/events/stream ("id:", "event: <type>", "data: <event>");
//     events are de-duplicated by id, so replays are harmless. POST
//     /admin/api/kill and /admin/api/extend with {"user_id"}; POST
//     /admin/api/hosts/drain, /undrain and /check with {"host"}.
//   - connect_url is opened with window.open(url, "_blank", "noopener");
//     it may be relative or absolute http(s).
//   - The player page shows the desktop itself: GET /api/viewer names
//     noVNC's files ({base, files}, base a /novnc/<digest>/ path); the page
//     fetches them into the cache, imports base + "core/rfb.js" (noVNC's
//     client, default export), and connects it to the websocket at
//     connect_url's fragment "path" with its "password". Without that
//     answer or module, the desktop opens in a new tab only.
package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"path"
	"strings"
)

// DefaultPrefix is the path prefix used when PageData.Prefix is empty.
const DefaultPrefix = "/remote-desktop"

//go:embed static templates
var embedded embed.FS

// Files is the static tree, rooted so that "app.css" is the file served at
// <prefix>/static/app.css. Serve it with, for example,
//
//	http.StripPrefix(prefix+"/static/", http.FileServerFS(ui.Files))
//
// The pages add "?v=<content hash>" to every static URL, so the handler may
// let browsers cache these files for a long time.
var Files fs.FS = mustSub(embedded, "static")

// PageData is what a page needs from the request.
type PageData struct {
	// Prefix is the path the module is mounted at, without a trailing
	// slash. Default: "/remote-desktop".
	Prefix string
	// UserName is the logged-in user's display name, shown in the navbar.
	UserName string
	// Nonce is the per-response CSP nonce; it is put on the <script> and
	// <link> tags. Optional: the pages also work with script-src 'self'.
	Nonce string
	// Admin adds the link between the player page and the dashboard.
	Admin bool
	// SiteName is the CTF's name shown at the left of the navbar.
	// Default: "CTF".
	SiteName string
	// Links are the navbar's links before Remote Desktop. Default (nil):
	// CTFd's Challenges and Scoreboard.
	Links []Link

	// For the message page: the HTTP status, a heading, the text, and an
	// optional link (default: back to the player page).
	Status  int
	Heading string
	Message string
	Link    *Link
}

// Link is one navbar link.
type Link struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// DefaultLinks are CTFd's own pages.
var DefaultLinks = []Link{{Name: "Challenges", URL: "/challenges"}, {Name: "Scoreboard", URL: "/scoreboard"}}

// Page names accepted by Page. The message page (errors such as "that
// desktop is not yours") has the player page's layout and no script.
const (
	PlayerPage  = "player"
	AdminPage   = "admin"
	MessagePage = "message"
)

var pages = map[string]*template.Template{}

func init() {
	hashes := map[string]string{}
	err := fs.WalkDir(Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Files, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		hashes[p] = hex.EncodeToString(sum[:6])
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("ui: hash static files: %v", err))
	}
	funcs := template.FuncMap{
		// asset turns a file name under static/ into its versioned URL
		// below the prefix; an unknown name is a programming error.
		"asset": func(prefix, name string) (string, error) {
			h, ok := hashes[name]
			if !ok {
				return "", fmt.Errorf("ui: no static file %q", name)
			}
			return prefix + "/static/" + name + "?v=" + h, nil
		},
	}
	for _, name := range []string{PlayerPage, AdminPage, MessagePage} {
		t := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(embedded,
			"templates/layout.html", path.Join("templates", name+".html")))
		pages[name] = t
	}
}

// Page renders the named page ("player", "admin" or "message") to w.
func Page(w io.Writer, name string, data PageData) error {
	t, ok := pages[name]
	if !ok {
		return fmt.Errorf("ui: unknown page %q", name)
	}
	data.Prefix = strings.TrimRight(data.Prefix, "/")
	if data.Prefix == "" {
		data.Prefix = DefaultPrefix
	}
	if data.SiteName == "" {
		data.SiteName = "CTF"
	}
	if data.Links == nil {
		data.Links = DefaultLinks
	}
	if name == MessagePage {
		if data.Heading == "" {
			data.Heading = "Remote Desktop"
		}
		if data.Link == nil {
			data.Link = &Link{Name: "Back to Remote Desktop", URL: data.Prefix}
		}
	}
	view := struct {
		PageData
		Page string
	}{data, name}
	if err := t.Execute(w, view); err != nil {
		return fmt.Errorf("ui: render %s page: %w", name, err)
	}
	return nil
}

func mustSub(f fs.FS, dir string) fs.FS {
	s, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return s
}
