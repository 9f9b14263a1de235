package remotedesktop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/ctf-desktops/caddy-remote-desktop/module/session"
)

// storageStore keeps session records in Caddy's storage (the file system by
// default; Redis, Postgres... with a storage module), one small JSON file
// per user under remote_desktop/sessions/. Records hold the VNC password:
// the storage is as private as the TLS keys Caddy keeps there.
type storageStore struct {
	storage certmagic.Storage
	logger  *zap.Logger
}

const sessionsPrefix = "remote_desktop/sessions"

func sessionKey(user string) string { return path.Join(sessionsPrefix, user+".json") }

func (s storageStore) Save(ctx context.Context, rec session.Session) error {
	return saveRecord(ctx, s, sessionKey(rec.User), rec, "session of "+rec.User)
}

func (s storageStore) Delete(ctx context.Context, user string) error {
	return deleteRecord(ctx, s, sessionKey(user), "session of "+user)
}

// saveRecord writes one JSON record; what names it in errors.
func saveRecord(ctx context.Context, s storageStore, key string, rec any, what string) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode %s: %w", what, err)
	}
	if err := s.storage.Store(ctx, key, data); err != nil {
		return fmt.Errorf("store %s: %w", what, err)
	}
	return nil
}

// deleteRecord removes one record; one already gone is not an error.
func deleteRecord(ctx context.Context, s storageStore, key, what string) error {
	err := s.storage.Delete(ctx, key)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", what, err)
	}
	return nil
}

func (s storageStore) LoadAll(ctx context.Context) ([]session.Session, error) {
	return loadRecords[session.Session](ctx, s, sessionsPrefix, "session")
}

// loadRecords reads every JSON record under prefix. One damaged record
// must not keep every other from loading; it is left in place for an
// operator to look at (for a warm desktop: its container is then removed,
// not guessed at).
func loadRecords[T any](ctx context.Context, s storageStore, prefix, what string) ([]T, error) {
	keys, err := s.storage.List(ctx, prefix, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	out := make([]T, 0, len(keys))
	for _, k := range keys {
		if path.Ext(k) != ".json" {
			continue
		}
		data, err := s.storage.Load(ctx, k)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", k, err)
		}
		var rec T
		if err := json.Unmarshal(data, &rec); err != nil {
			s.logger.Error("skipping unreadable "+what+" record", zap.String("key", k), zap.Error(err))
			continue
		}
		out = append(out, rec)
	}
	return out, nil
}

// checkWritable proves the storage accepts writes before any session is
// created, so that a read-only data directory is an error at start, not a
// silently memory-only mode.
func (s storageStore) checkWritable(ctx context.Context) error {
	key := path.Join("remote_desktop", ".write-check")
	if err := s.storage.Store(ctx, key, []byte("ok")); err != nil {
		return fmt.Errorf("session storage is not writable (%s): %w", storageName(s.storage), err)
	}
	if err := s.storage.Delete(ctx, key); err != nil {
		return fmt.Errorf("session storage is not writable (%s): %w", storageName(s.storage), err)
	}
	return nil
}

func storageName(st certmagic.Storage) string {
	if fs, ok := st.(*certmagic.FileStorage); ok {
		return "file storage at " + fs.Path
	}
	return fmt.Sprintf("%T", st)
}
