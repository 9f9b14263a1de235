package browser

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"
)

// Colours of the reference desktop (testdata/images/desktop/jwmrc): JWM's
// solid desktop background and its tray, 26 pixels high at the bottom.
var (
	desktopBackground = color.RGBA{0x2B, 0x3A, 0x42, 0xFF}
	trayBackground    = color.RGBA{0x33, 0x33, 0x33, 0xFF}
)

const trayHeight = 26

// canvasStats describes what a picture of a desktop shows.
type canvasStats struct {
	Width, Height int
	Colours       int        // distinct colours (opaque RGB)
	Dominant      color.RGBA // the most common colour
	DominantShare float64    // of all pixels
	Background    float64    // share of desktopBackground
	Tray          float64    // share of trayBackground in the bottom trayHeight rows
	Transparent   float64    // share of pixels that are not opaque
}

func (s canvasStats) String() string {
	return fmt.Sprintf("%dx%d, %d colours, most common #%02X%02X%02X (%.1f%%), desktop background %.1f%%, tray %.1f%% of the bottom %d rows, transparent %.1f%%",
		s.Width, s.Height, s.Colours, s.Dominant.R, s.Dominant.G, s.Dominant.B, 100*s.DominantShare,
		100*s.Background, 100*s.Tray, trayHeight, 100*s.Transparent)
}

// analyse counts the colours of img.
func analyse(img image.Image) canvasStats {
	b := img.Bounds()
	s := canvasStats{Width: b.Dx(), Height: b.Dy()}
	if s.Width == 0 || s.Height == 0 {
		return s
	}
	counts := map[color.RGBA]int{}
	var bg, tray, trayTotal, transparent int
	for y := b.Min.Y; y < b.Max.Y; y++ {
		inTray := y >= b.Max.Y-trayHeight
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			if c.A != 0xFF {
				transparent++
			}
			counts[c]++
			if c == desktopBackground {
				bg++
			}
			if inTray {
				trayTotal++
				if c == trayBackground {
					tray++
				}
			}
		}
	}
	total := float64(s.Width * s.Height)
	best := 0
	for c, n := range counts {
		if n > best || n == best && lessRGBA(c, s.Dominant) {
			best, s.Dominant = n, c
		}
	}
	s.Colours = len(counts)
	s.DominantShare = float64(best) / total
	s.Background = float64(bg) / total
	s.Transparent = float64(transparent) / total
	if trayTotal > 0 {
		s.Tray = float64(tray) / float64(trayTotal)
	}
	return s
}

func lessRGBA(a, b color.RGBA) bool {
	return uint32(a.R)<<24|uint32(a.G)<<16|uint32(a.B)<<8|uint32(a.A) <
		uint32(b.R)<<24|uint32(b.G)<<16|uint32(b.B)<<8|uint32(b.A)
}

// looksLikeDesktop says whether s is the reference desktop drawn in full
// (the background, the tray, and windows or text on it), or why not.
func (s canvasStats) looksLikeDesktop() error {
	switch {
	case s.Transparent > 0:
		return fmt.Errorf("%.1f%% of the pixels are not opaque: the framebuffer is not fully drawn", 100*s.Transparent)
	case s.Colours < 16:
		return fmt.Errorf("only %d colours: blank", s.Colours)
	case s.DominantShare > 0.97:
		return fmt.Errorf("%.1f%% of the pixels are one colour: blank", 100*s.DominantShare)
	case s.Background < 0.05:
		return fmt.Errorf("the desktop background covers %.1f%%: not JWM's desktop", 100*s.Background)
	case s.Tray < 0.5:
		return fmt.Errorf("the bottom %d rows are %.1f%% tray colour: no JWM tray", trayHeight, 100*s.Tray)
	}
	return nil
}

// decodeDataURL decodes a data:image/png;base64 URL.
func decodeDataURL(u string) ([]byte, image.Image, error) {
	const prefix = "data:image/png;base64,"
	if !strings.HasPrefix(u, prefix) {
		return nil, nil, fmt.Errorf("not a PNG data URL: %.40q", u)
	}
	raw, err := base64.StdEncoding.DecodeString(u[len(prefix):])
	if err != nil {
		return nil, nil, fmt.Errorf("decode data URL: %w", err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("decode PNG: %w", err)
	}
	return raw, img, nil
}

// TestAnalyse checks the pixel checks on made-up pictures: they must tell a
// drawn desktop from a black, a transparent or a one-colour canvas.
func TestAnalyse(t *testing.T) {
	const w, h = 200, 100
	fill := func(c color.RGBA) *image.RGBA {
		img := image.NewRGBA(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				img.SetRGBA(x, y, c)
			}
		}
		return img
	}
	desktop := fill(desktopBackground)
	for y := h - trayHeight; y < h; y++ {
		for x := range w {
			desktop.SetRGBA(x, y, trayBackground)
		}
	}
	for y := 10; y < 50; y++ { // a window with some "text"
		for x := 20; x < 120; x++ {
			desktop.SetRGBA(x, y, color.RGBA{uint8(x * 2), uint8(y * 4), 0xEE, 0xFF})
		}
	}

	if err := analyse(desktop).looksLikeDesktop(); err != nil {
		t.Errorf("desktop: %v (%s)", err, analyse(desktop))
	}
	for name, img := range map[string]*image.RGBA{
		"black":       fill(color.RGBA{0, 0, 0, 0xFF}),
		"transparent": fill(color.RGBA{}),
		"background":  fill(desktopBackground),
	} {
		if err := analyse(img).looksLikeDesktop(); err == nil {
			t.Errorf("%s canvas passes as a desktop: %s", name, analyse(img))
		}
	}

	var buf bytes.Buffer
	if err := png.Encode(&buf, desktop); err != nil {
		t.Fatal(err)
	}
	raw, img, err := decodeDataURL("data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()))
	if err != nil || !bytes.Equal(raw, buf.Bytes()) || img.Bounds().Dx() != w {
		t.Errorf("decodeDataURL: %v", err)
	}
	if _, _, err := decodeDataURL("data:text/plain,hello"); err == nil {
		t.Error("decodeDataURL accepted a text URL")
	}
}
