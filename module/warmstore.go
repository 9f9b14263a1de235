package remotedesktop

import (
	"context"
	"path"

	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// Warm desktops' records sit beside the sessions' in Caddy's storage, one
// small JSON file each under remote_desktop/warm/ (they hold the VNC
// password the claiming session gets).
const warmPrefix = "remote_desktop/warm"

func warmKey(id string) string { return path.Join(warmPrefix, id+".json") }

func (s storageStore) SaveWarm(ctx context.Context, d session.WarmDesk) error {
	return saveRecord(ctx, s, warmKey(d.ID), d, "warm desktop "+d.ID)
}

func (s storageStore) DeleteWarm(ctx context.Context, id string) error {
	return deleteRecord(ctx, s, warmKey(id), "warm desktop "+id)
}

func (s storageStore) LoadWarm(ctx context.Context) ([]session.WarmDesk, error) {
	return loadRecords[session.WarmDesk](ctx, s, warmPrefix, "warm desktop")
}

var _ session.WarmStore = storageStore{}
