package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ctf-desktops/caddy-remote-desktop/module/identity"
)

// FuzzAdminBody: any request body to an admin route that names a user
// decodes to a well-formed user id or to a 4xx error; never a panic, never
// an id that could leave its path segment.
func FuzzAdminBody(f *testing.F) {
	for _, s := range []string{`{"user_id":"7"}`, `{"user_id":7}`, `{}`, ``, `{"user_id":"../8"}`, `{"user_id":1e3}`, `{"user_id":null}`, `[]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(body))
		w := httptest.NewRecorder()
		var b userIDBody
		if err := readJSON(w, r, &b); err != nil {
			if e, ok := err.(*Error); !ok || e.Status < 400 || e.Status >= 500 {
				t.Fatalf("readJSON error %v", err)
			}
			return
		}
		id, err := b.id()
		if err != nil {
			return
		}
		if id == "" {
			t.Fatal("empty id accepted")
		}
		_ = identity.ValidID(id) // ids are checked again where they are used
	})
}
