package remotedesktop

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// Warm records round-trip through Caddy's storage beside the sessions'; a
// damaged one is skipped, not fatal, and sessions are not mistaken for them.
func TestWarmStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	st := &certmagic.FileStorage{Path: filepath.Join(t.TempDir(), "storage")}
	store := storageStore{storage: st, logger: zap.NewNop()}
	if err := store.Save(ctx, session.Session{ID: "s1", User: "7"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"w1", "w2"} {
		if err := store.SaveWarm(ctx, session.WarmDesk{ID: id, Host: "h1", ContainerID: "c-" + id, Password: "pw"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Store(ctx, warmKey("broken"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if err := store.DeleteWarm(ctx, "w2"); err != nil {
		t.Fatal(err)
	}
	if err := store.DeleteWarm(ctx, "never"); err != nil {
		t.Fatalf("deleting a missing record: %v", err)
	}
	got, err := store.LoadWarm(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "w1" || got[0].ContainerID != "c-w1" || got[0].Password != "pw" {
		t.Fatalf("loaded %+v, want w1 alone", got)
	}
	sessions, err := store.LoadAll(ctx)
	if err != nil || len(sessions) != 1 || sessions[0].ID != "s1" {
		t.Fatalf("sessions %+v %v", sessions, err)
	}
}
