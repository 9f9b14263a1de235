package bench

import (
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out := `Running 1s test @ http://127.0.0.1:18181/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.50ms    6.03ms  38.24ms   70.10%
    Req/Sec   382.80     98.01   607.00     80.00%
  Latency Distribution
     50%    9.74ms
     75%   13.52ms
     90%   18.33ms
     99%    1.07s
  386 requests in 1.01s, 1.80MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:    383.08
Transfer/sec:      1.79MB
`
	r, err := ParseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	want := WrkResult{Requests: 386, Elapsed: 1010 * time.Millisecond, RPS: 383.08,
		P50: 9740 * time.Microsecond, P90: 18330 * time.Microsecond, P99: 1070 * time.Millisecond,
		Non2xx: 3, SocketErrors: 3}
	if r != want {
		t.Fatalf("got %+v\nwant %+v", r, want)
	}
	if _, err := ParseWrk("unable to connect to 127.0.0.1:1 Connection refused"); err == nil {
		t.Fatal("no error for a failed run")
	}
}

func TestParseProcNetTCP(t *testing.T) {
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0000000000000000 100 0 0 10 0
   1: 014D1EAC:A1B2 0B4D1EAC:0016 01 00000000:00000000 02:000A7D8C 00000000     0        0 201 2 0000000000000000 20 4 30 10 -1
   2: 014D1EAC:A1B3 0B4D1EAC:0016 01 00000000:00000000 02:000A7D8C 00000000     0        0 202 2 0000000000000000 20 4 30 10 -1
   3: 014D1EAC:A1B4 0C4D1EAC:0016 01 00000000:00000000 02:000A7D8C 00000000     0        0 203 2 0000000000000000 20 4 30 10 -1
   4: 014D1EAC:A1B5 0C4D1EAC:0016 06 00000000:00000000 02:000A7D8C 00000000     0        0 204 2 0000000000000000 20 4 30 10 -1
   5: 014D1EAC:A1B6 0D4D1EAC:0016 01 00000000:00000000 02:000A7D8C 00000000     0        0 999 2 0000000000000000 20 4 30 10 -1
   6: 014D1EAC:A1B7 0B4D1EAC:1F90 01 00000000:00000000 02:000A7D8C 00000000     0        0 205 2 0000000000000000 20 4 30 10 -1
`)
	got, err := parseProcNetTCP(table, 22, map[string]bool{"201": true, "202": true, "203": true, "204": true, "205": true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["172.30.77.11"] != 2 || got["172.30.77.12"] != 1 {
		t.Fatalf("got %v, want 2 to .11 and 1 to .12 (not TIME_WAIT, not another process's, not port 8080)", got)
	}
}

func TestPercentile(t *testing.T) {
	v := []int64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	s := Sorted(v)
	if p := Percentile(s, 50); p != 5 {
		t.Errorf("P50 = %d, want 5", p)
	}
	if p := Percentile(s, 95); p != 10 {
		t.Errorf("P95 = %d, want 10", p)
	}
	if p := Percentile(s, 90); p != 9 {
		t.Errorf("P90 = %d, want 9", p)
	}
}

func TestCheckAllowed(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:80", "172.30.77.11:22"} {
		if err := checkAllowedAddr(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"10.0.0.1:80", "172.30.78.1:22", "example.com:80", "[::1]:80"} {
		if err := checkAllowedAddr(bad); err == nil {
			t.Errorf("%s allowed", bad)
		}
	}
}
