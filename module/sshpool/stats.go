package sshpool

// Stats is a snapshot of a pool's counters.
type Stats struct {
	Open          int   // connections open now (idle + in use)
	Idle          int   // open and ready for Get
	InUse         int   // checked out
	Dialing       int   // being dialed now (they hold a slot too)
	Waiting       int   // Get calls waiting for a connection
	Dialed        int64 // connections ever established
	DialFailures  int64 // dials that failed
	Discarded     int64 // connections closed because broken, dead or failing the keepalive
	ProbeFailures int64 // idle connections found dead on checkout
	Retried       int64 // Do calls that retried on a fresh connection
}

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	open := len(p.conns)
	p.mu.Unlock()
	return Stats{
		Open:          open,
		Idle:          len(p.idle),
		InUse:         int(p.inUse.Load()),
		Dialing:       int(p.dialing.Load()),
		Waiting:       int(p.waiting.Load()),
		Dialed:        p.dialed.Load(),
		DialFailures:  p.dialFailures.Load(),
		Discarded:     p.discarded.Load(),
		ProbeFailures: p.probeFailures.Load(),
		Retried:       p.retried.Load(),
	}
}
