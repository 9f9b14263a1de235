// Package session is the seed's ContainerManager: one desktop session per
// user, created in the background on the least-loaded healthy host, timed,
// extended, reaped, and kept across config reloads and restarts (records in
// a Store, labels on the containers).
package session

import (
	"context"
	"time"
)

// State of a session. A session walks queued → scheduling → starting →
// waiting_for_desktop → ready and ends destroyed, expired or failed. It
// stays queued while it waits for a host slot or for its host's Docker
// start slot (see work); a retry on another host is queued again there.
type State string

// States.
const (
	Queued            State = "queued"
	Scheduling        State = "scheduling"
	Starting          State = "starting"
	WaitingForDesktop State = "waiting_for_desktop"
	Ready             State = "ready"
	Destroyed         State = "destroyed"
	Expired           State = "expired"
	Failed            State = "failed"
)

// Terminal reports whether the session has ended.
func (s State) Terminal() bool { return s == Destroyed || s == Expired || s == Failed }

// Stage is a state and when it was entered.
type Stage struct {
	State State     `json:"state"`
	At    time.Time `json:"at"`
}

// Session is one user's desktop. It is also the stored record, so every
// field survives a restart. Password is secret: it goes to storage and to
// the session's owner and admins, never to logs or events.
type Session struct {
	ID       string  `json:"id"`
	User     string  `json:"user_id"`
	UserName string  `json:"user_name,omitempty"`
	State    State   `json:"state"`
	Stages   []Stage `json:"stages"`
	Error    string  `json:"error,omitempty"`

	Host        string `json:"host,omitempty"` // workspace host name
	PubHostname string `json:"pub_hostname,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	Port        int    `json:"port,omitempty"`     // noVNC (6080), published
	VNCPort     int    `json:"vnc_port,omitempty"` // raw VNC (5900), when published
	Password    string `json:"password,omitempty"`

	CreatedAt      time.Time `json:"created_at"`
	ReadyAt        time.Time `json:"ready_at,omitzero"`
	TimerStartedAt time.Time `json:"timer_started_at,omitzero"`
	ExpiresAt      time.Time `json:"expires_at,omitzero"`
	Extensions     int       `json:"extensions"`

	// Not stored: runtime bookkeeping, guarded by the Manager's lock.
	slotHeld bool
	cancel   context.CancelFunc
	expiry   Timer
	claim    Timer // the unclaimed grace (armClaimLocked)
}

// Addr is host:port of the session's noVNC endpoint, "" until known.
func (s *Session) Addr() string {
	if s.PubHostname == "" || s.Port == 0 {
		return ""
	}
	return joinHostPort(s.PubHostname, s.Port)
}

func (s *Session) enter(st State, now time.Time) {
	s.State = st
	s.Stages = append(s.Stages, Stage{State: st, At: now.UTC()})
}

// passed reports whether s has been in state st.
func (s *Session) passed(st State) bool {
	for _, g := range s.Stages {
		if g.State == st {
			return true
		}
	}
	return false
}

// snapshot copies the exported fields, for use outside the lock.
func (s *Session) snapshot() Session {
	c := Session{
		ID: s.ID, User: s.User, UserName: s.UserName, State: s.State, Error: s.Error,
		Host: s.Host, PubHostname: s.PubHostname, ContainerID: s.ContainerID, Port: s.Port,
		VNCPort: s.VNCPort, Password: s.Password, CreatedAt: s.CreatedAt, ReadyAt: s.ReadyAt,
		TimerStartedAt: s.TimerStartedAt, ExpiresAt: s.ExpiresAt, Extensions: s.Extensions,
	}
	c.Stages = append([]Stage(nil), s.Stages...)
	return c
}

// Store keeps session records across restarts.
type Store interface {
	Save(ctx context.Context, s Session) error
	Delete(ctx context.Context, user string) error
	LoadAll(ctx context.Context) ([]Session, error)
}
