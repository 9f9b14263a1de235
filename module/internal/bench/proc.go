package bench

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the kernel's USER_HZ, the unit of /proc/<pid>/stat's CPU times;
// it is 100 on every Linux architecture Go supports.
const userHZ = 100

// CPUTime is the user+system CPU time the process has used so far, all
// threads together (/proc/<pid>/stat fields 14 and 15), at 10 ms
// resolution.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// RSS is the process's resident set size in bytes (VmRSS).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("VmRSS: %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// TCPConnsTo counts the process's established TCP connections to the given
// remote port, by remote IP. It matches the socket inodes of
// /proc/<pid>/fd against /proc/<pid>/net/tcp, so other processes'
// connections (other test runs on the same hosts) are not counted.
func TCPConnsTo(pid, remotePort int) (map[string]int, error) {
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	inodes := make(map[string]bool, len(ents))
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return nil, err
	}
	return parseProcNetTCP(b, remotePort, inodes)
}

// parseProcNetTCP reads an IPv4 /proc/net/tcp table: established (st 01)
// connections to remotePort whose inode is in inodes, counted by remote IP.
func parseProcNetTCP(b []byte, remotePort int, inodes map[string]bool) (map[string]int, error) {
	out := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "01" || !inodes[f[9]] {
			continue
		}
		hexIP, hexPort, ok := strings.Cut(f[2], ":")
		if !ok || len(hexIP) != 8 {
			continue
		}
		port, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || int(port) != remotePort {
			continue
		}
		raw, err := hex.DecodeString(hexIP)
		if err != nil {
			continue
		}
		// The kernel prints the address as a host-order (little-endian) word.
		ip := netip.AddrFrom4([4]byte{raw[3], raw[2], raw[1], raw[0]})
		out[ip.String()]++
	}
	return out, sc.Err()
}
