package sshpool

// Stats is a snapshot of a pool's counters.
type Stats struct {
	Open     int // connections open now (busy + idle)
	Busy     int // open and carrying at least one operation
	Idle     int // open and carrying none
	Channels int // operations in flight, over all connections (each holds its channels)
	Dialing  int // being dialed now (they hold a slot too)
	Waiting  int // operations waiting for a first connection to be dialed

	PeakOpen     int // most TCP connections open or being set up at once, ever (≤ MaxConns)
	PeakChannels int // most operations in flight at once, ever

	Dialed        int64 // connections ever established
	DialFailures  int64 // dials that failed
	Discarded     int64 // connections closed because dead, broken or failing the keepalive
	ProbeFailures int64 // keepalives that failed before an operation
	Retried       int64 // Do calls that retried on another connection
}

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	st := Stats{
		Open:         len(p.clients),
		Channels:     p.channels,
		Dialing:      p.dialing,
		Waiting:      p.waiting,
		PeakOpen:     p.peakOpen,
		PeakChannels: p.peakCh,
	}
	for _, c := range p.clients {
		if c.inflight > 0 {
			st.Busy++
		}
	}
	p.mu.Unlock()
	st.Idle = st.Open - st.Busy
	st.Dialed = p.dialed.Load()
	st.DialFailures = p.dialFailures.Load()
	st.Discarded = p.discarded.Load()
	st.ProbeFailures = p.probeFailures.Load()
	st.Retried = p.retried.Load()
	return st
}
