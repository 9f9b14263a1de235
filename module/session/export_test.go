package session

// Internals the unit tests (package session_test, which uses the fakes of
// sessiontest and so cannot be package session) look at.

// ClaimArmed reports whether the user's session has its unclaimed grace
// timer armed.
func ClaimArmed(m *Manager, user string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s, ok := m.sessions[user]
	return ok && s.claim != nil
}

// LaneStats reports a host's create lane (limit, held, waiting) and its
// removal lane's held count.
func LaneStats(m *Manager, host string) (limit, held, waiting, removing int) {
	limit, held, waiting = m.work.stats(host, startLane)
	_, removing, _ = m.work.stats(host, removeLane)
	return limit, held, waiting, removing
}

// RunTimeout is how long a container start may take once its slot is held.
const RunTimeout = runTimeout
