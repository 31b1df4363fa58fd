package server_test

import (
	"context"
	"image"
	"image/color"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/tracker/trackertest"
)

// chromium returns the path of Debian's headless-capable Chromium, skipping
// the test without it (failing under CI=true, where deploy/deps.sh installs
// it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found (CI=true: required; deploy/deps.sh installs it)")
	}
	t.Skip("chromium not found; deploy/deps.sh installs it")
	return ""
}

// runChromium runs headless Chromium on pageURL with args and returns its
// standard output.
func runChromium(t *testing.T, bin, pageURL string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--disable-extensions", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--window-size=1280,900",
	}
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), pageURL)...)
	cmd.Dir = t.TempDir()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// TestStatusPageInChromium renders the status page in a real browser, with
// the token as the Basic password in the URL as an operator's browser would
// send it after the prompt, and checks the rendered text and a screenshot.
func TestStatusPageInChromium(t *testing.T) {
	t.Parallel()
	bin := chromium(t)
	r := newRollout(t)
	u, err := url.Parse(r.tr.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("ops", r.tr.Token)

	dom := runChromium(t, bin, u.String(), "--dump-dom")
	for _, want := range []string{
		`id="swarms"`, `id="agents"`,
		r.layer.Digest.String()[:19], r.seeding.Digest.String()[:19],
		trackertest.ID("agentA"), trackertest.ID("agentB"), trackertest.ID("agentC"), "seeder", "seeding", "50%", "4 peers alive",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	shot := filepath.Join(t.TempDir(), "status.png")
	runChromium(t, bin, u.String(), "--screenshot="+shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if out := os.Getenv("SHOAL_STATUS_SCREENSHOT"); out != "" {
		data, _ := os.ReadFile(shot)
		os.WriteFile(out, data, 0o644)
	}
	colors, header, rows := pixels(img)
	t.Logf("screenshot %v: %d colours, %d header pixels, %d striped-row pixels", img.Bounds().Size(), colors, header, rows)
	if colors < 16 {
		t.Errorf("screenshot has %d colours: blank, or the page did not render", colors)
	}
	// The tables' header cells (#2b5f8a) and striped rows (#eef3f8) are on
	// screen: the tables rendered, not an error page.
	if header < 1000 || rows < 1000 {
		t.Errorf("screenshot shows %d header and %d striped-row pixels: no tables", header, rows)
	}
}

// pixels counts the distinct colours of img, and its pixels of the table
// header's and the striped rows' colour.
func pixels(img image.Image) (colors, header, rows int) {
	seen := make(map[color.RGBA]bool)
	headerC := color.RGBA{0x2b, 0x5f, 0x8a, 0xff}
	rowC := color.RGBA{0xee, 0xf3, 0xf8, 0xff}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			c := color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), uint8(a >> 8)}
			seen[c] = true
			switch c {
			case headerC:
				header++
			case rowC:
				rows++
			}
		}
	}
	return len(seen), header, rows
}
