// Package audit is the admin audit trail: every admin action (kill,
// extend, drain, undrain, check) and every time an admin opens someone
// else's desktop (session_viewed). Unlike the event log's ring, which a
// churn of player events turns over in minutes, the trail is persisted,
// one JSON Lines file per UTC day in Caddy's storage, kept for a number of
// days, and read back by query: player activity cannot push it out of
// sight, and it survives restarts.
package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Actions recorded.
const (
	Kill          = "kill"
	Extend        = "extend"
	Drain         = "drain"
	Undrain       = "undrain"
	Check         = "check"
	SessionViewed = "session_viewed"
)

// Entry is one admin action. It never holds a secret.
type Entry struct {
	Time      time.Time `json:"time"`
	Actor     string    `json:"actor"` // the admin's user id
	ActorName string    `json:"actor_name,omitempty"`
	Action    string    `json:"action"`
	User      string    `json:"user,omitempty"` // the player acted on
	Host      string    `json:"host,omitempty"`
	Session   string    `json:"session,omitempty"`
	Result    string    `json:"result"` // "ok" or the error code answered
	Remote    string    `json:"remote,omitempty"`
}

// Storage is the part of Caddy's (certmagic) storage the trail uses.
type Storage interface {
	Store(ctx context.Context, key string, value []byte) error
	Load(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, path string, recursive bool) ([]string, error)
}

// Defaults.
const (
	DefaultRetentionDays = 90
	// MaxPerDay bounds one day's file (about 2.5 MB), which is rewritten on
	// each entry. Past it, further entries of that day are dropped (and
	// logged): never the older ones, so flooding cannot erase a trail.
	MaxPerDay = 10000
)

// Trail is safe for concurrent use. Entries are written in the order
// Record is called.
type Trail struct {
	storage   Storage
	prefix    string
	logger    *zap.Logger
	now       func() time.Time
	retention int
	maxPerDay int

	mu      sync.Mutex
	day     string  // the day entries holds, "" until the first Record
	entries []Entry // that day's file, as stored
	dropped int     // entries dropped that day for MaxPerDay
	pruned  string  // the day retention was last applied
}

// New makes a trail under prefix (e.g. remote_desktop/audit) of storage,
// keeping retentionDays days (DefaultRetentionDays when <= 0).
func New(storage Storage, prefix string, retentionDays int, logger *zap.Logger) *Trail {
	if retentionDays <= 0 {
		retentionDays = DefaultRetentionDays
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Trail{storage: storage, prefix: prefix, logger: logger, now: time.Now,
		retention: retentionDays, maxPerDay: MaxPerDay}
}

// SetClock replaces the time source (tests).
func (t *Trail) SetClock(now func() time.Time) { t.now = now }

// SetRetention changes how many days are kept (a config reload).
func (t *Trail) SetRetention(days int) {
	if days <= 0 {
		days = DefaultRetentionDays
	}
	t.mu.Lock()
	t.retention = days
	t.mu.Unlock()
}

const dayLayout = "2006-01-02"

func (t *Trail) key(day string) string { return path.Join(t.prefix, day+".jsonl") }

// Record stamps e with the time and stores it. A nil trail records nothing.
func (t *Trail) Record(ctx context.Context, e Entry) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e.Time = t.now().UTC()
	day := e.Time.Format(dayLayout)
	if day != t.day {
		entries, err := t.load(ctx, day) // the day may have begun before a restart
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		t.day, t.entries, t.dropped = day, entries, 0
	}
	if len(t.entries) >= t.maxPerDay {
		t.dropped++
		if t.dropped == 1 {
			t.logger.Error("audit trail: today's file is full; further admin actions today are only in the log",
				zap.Int("max_per_day", t.maxPerDay))
		}
		t.logger.Warn("audit entry not stored", zap.String("action", e.Action), zap.String("actor", e.Actor), zap.String("user", e.User))
		return nil
	}
	next := append(slices.Clip(t.entries), e)
	if err := t.storage.Store(ctx, t.key(day), encode(next)); err != nil {
		return fmt.Errorf("audit: store %s: %w", t.key(day), err)
	}
	t.entries = next
	if t.pruned != day {
		t.pruned = day
		t.prune(ctx, e.Time)
	}
	return nil
}

func encode(entries []Entry) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, e := range entries {
		_ = enc.Encode(e) // plain strings and a time: cannot fail
	}
	return b.Bytes()
}

// load reads one day's file; a missing file is an empty day, and a damaged
// line is skipped (logged) so that the rest stays readable.
func (t *Trail) load(ctx context.Context, day string) ([]Entry, error) {
	data, err := t.storage.Load(ctx, t.key(day))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", t.key(day), err)
	}
	var out []Entry
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			t.logger.Error("audit: skipping unreadable line", zap.String("key", t.key(day)), zap.Int("line", i+1), zap.Error(err))
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// days lists the stored days, newest first.
func (t *Trail) days(ctx context.Context) ([]string, error) {
	keys, err := t.storage.List(ctx, t.prefix, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", t.prefix, err)
	}
	var days []string
	for _, k := range keys {
		day, ok := strings.CutSuffix(path.Base(k), ".jsonl")
		if _, err := time.Parse(dayLayout, day); ok && err == nil {
			days = append(days, day)
		}
	}
	slices.Sort(days)
	slices.Reverse(days)
	return days, nil
}

// prune deletes the days older than the retention.
func (t *Trail) prune(ctx context.Context, now time.Time) {
	days, err := t.days(ctx)
	if err != nil {
		t.logger.Warn("audit: cannot list old days", zap.Error(err))
		return
	}
	oldest := now.AddDate(0, 0, -(t.retention - 1)).Format(dayLayout)
	for _, d := range days {
		if d < oldest {
			if err := t.storage.Delete(ctx, t.key(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.logger.Warn("audit: cannot delete an old day", zap.String("day", d), zap.Error(err))
			}
		}
	}
}

// Filter selects entries; zero fields match everything.
type Filter struct {
	Action string
	Actor  string
	User   string
	Since  time.Time // inclusive
	Until  time.Time // exclusive
	Limit  int       // default 100
}

func (f Filter) match(e Entry) bool {
	return (f.Action == "" || e.Action == f.Action) &&
		(f.Actor == "" || e.Actor == f.Actor) &&
		(f.User == "" || e.User == f.User) &&
		(f.Since.IsZero() || !e.Time.Before(f.Since)) &&
		(f.Until.IsZero() || e.Time.Before(f.Until))
}

// Query returns the newest entries matching f, newest first.
func (t *Trail) Query(ctx context.Context, f Filter) ([]Entry, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	out := []Entry{}
	if t == nil {
		return out, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	days, err := t.days(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	for _, day := range days {
		if !f.Since.IsZero() && day < f.Since.UTC().Format(dayLayout) {
			break
		}
		if !f.Until.IsZero() && day > f.Until.UTC().Format(dayLayout) {
			continue
		}
		entries := t.entries
		if day != t.day {
			if entries, err = t.load(ctx, day); err != nil {
				return nil, fmt.Errorf("audit: %w", err)
			}
		}
		for i := len(entries) - 1; i >= 0; i-- {
			if f.match(entries[i]) {
				out = append(out, entries[i])
				if len(out) == f.Limit {
					return out, nil
				}
			}
		}
	}
	return out, nil
}
