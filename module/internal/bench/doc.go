// Package bench measures the product against its floor and its
// alternatives on the real test bed, and prints one table of ratios, each
// taken in the same run (the machines are noisy: absolute times are given
// only as context). BENCHMARKS.md at the repository root explains every
// figure and records a run.
//
//	make bench
//	# which is: testdata/bench/ensure-tools.sh, then
//	RD_BENCH=1 RD_TESTBED_REQUIRED=1 RD_CADDY_BIN=$PWD/caddy \
//	    go test -count=1 -timeout 30m -run '^TestBench$' -v ./module/internal/bench
//
// TestBench runs only when RD_BENCH=1 (so `make test` skips it). It starts
// the real Caddy binary (module/internal/e2e), the CTFd stand-in, nginx and
// wrk, talks only to loopback and the test bed's network, labels its
// containers with an instance name starting with "bench-", and removes
// every container and process it started.
//
// The non-test files hold what the test drives: a wrk runner and parser, a
// websocket load generator, an nginx runner, /proc readers and the table.
package bench
