// Package browser holds the end-to-end test that drives a real browser
// (Debian's Chromium, through github.com/chromedp/chromedp) against the real
// Caddy binary, the CTFd stand-in and the real test bed: a player's whole
// journey from the Start button to the pixels of the remote desktop, the
// admin dashboard following it live, and a second player kept out.
//
// Everything that imports chromedp is in _test.go files, so the browser
// driver never reaches the runtime import graph (`go list -deps ./cmd/caddy`
// does not list it). This file only gives the package its documentation.
//
// The test needs /usr/bin/chromium (testdata/browser/ensure-chromium.sh
// installs it); without it the test skips, or fails under
// RD_TESTBED_REQUIRED=1. Screenshots of every step go to $RD_SCREENSHOTS
// (default: <repository>/out/screenshots).
package browser
