package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// sizeRE is Docker's RAMInBytes syntax: a number, an optional binary unit,
// optional "i" and "b" (512m, 4g, 2gb, 1GiB, 1048576).
var sizeRE = regexp.MustCompile(`^(\d+(?:\.\d+)?) ?([kKmMgGtT])?[iI]?[bB]?$`)

// ParseSize reads a memory size the way `docker run --memory` does; units are
// powers of 1024.
func ParseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size (want a number with an optional unit k, m, g or t, e.g. 512m or 4g)", s)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size: %v", s, err)
	}
	mult := map[string]float64{"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[strings.ToLower(m[2])]
	b := n * mult
	if b < 4<<20 {
		return 0, fmt.Errorf("%q is too small (Docker needs at least 4m)", s)
	}
	if b > 1<<50 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(b), nil
}

// ParseResolution reads WIDTHxHEIGHT.
func ParseResolution(s string) (w, h int, err error) {
	ws, hs, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "x")
	if ok {
		w, err = strconv.Atoi(ws)
		if err == nil {
			h, err = strconv.Atoi(hs)
		}
	}
	if !ok || err != nil {
		return 0, 0, fmt.Errorf("%q is not a resolution (want WIDTHxHEIGHT, e.g. 1920x1080)", s)
	}
	if w < 320 || h < 200 || w > 8192 || h > 8192 {
		return 0, 0, fmt.Errorf("%q is out of range (320x200 to 8192x8192)", s)
	}
	return w, h, nil
}
