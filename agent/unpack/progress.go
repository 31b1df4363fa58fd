package unpack

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// EventKind says what happened to a layer.
type EventKind int

// Events of a layer, in order: Started, any number of Bytes, then Staged and
// Applied, or Failed.
const (
	LayerStarted EventKind = iota
	LayerBytes
	LayerStaged  // fetched, verified and extracted
	LayerApplied // moved into the rootfs
	LayerFailed
)

func (k EventKind) String() string {
	switch k {
	case LayerStarted:
		return "started"
	case LayerBytes:
		return "bytes"
	case LayerStaged:
		return "staged"
	case LayerApplied:
		return "applied"
	case LayerFailed:
		return "failed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is a progress report about one layer.
type Event struct {
	Kind     EventKind
	Layer    int // index in the manifest
	Layers   int // number of layers in the image
	Digest   string
	Size     int64 // compressed size from the manifest
	Fetched  int64 // compressed bytes read so far
	Unpacked int64 // decompressed bytes read so far
	Err      error // set on LayerFailed
}

// Progress receives events while Pull runs. Update is called from several
// goroutines at once and should return quickly.
type Progress interface {
	Update(Event)
}

type nopProgress struct{}

func (nopProgress) Update(Event) {}

// LogProgress logs layer starts, completions and failures; byte counts are
// logged at debug level.
type LogProgress struct{ log *slog.Logger }

var _ Progress = (*LogProgress)(nil)

// NewLogProgress returns a Progress that writes to log.
func NewLogProgress(log *slog.Logger) *LogProgress { return &LogProgress{log: log} }

// Update implements Progress.
func (p *LogProgress) Update(e Event) {
	attrs := []any{"layer", fmt.Sprintf("%d/%d", e.Layer+1, e.Layers), "digest", e.Digest}
	switch e.Kind {
	case LayerStarted:
		p.log.Info("layer started", append(attrs, "bytes", e.Size)...)
	case LayerBytes:
		p.log.Debug("layer progress", append(attrs, "fetched", e.Fetched, "unpacked", e.Unpacked)...)
	case LayerStaged:
		p.log.Info("layer unpacked", append(attrs, "bytes", e.Fetched, "unpacked", e.Unpacked)...)
	case LayerApplied:
		p.log.Info("layer applied", attrs...)
	case LayerFailed:
		p.log.Error("layer failed", append(attrs, "error", e.Err)...)
	}
}

// TermProgress draws one line per layer and redraws the block in place with
// ANSI escapes, at most every interval.
type TermProgress struct {
	w        io.Writer
	interval time.Duration

	mu     sync.Mutex
	lines  []Event
	drawn  int // lines on screen from the last draw
	last   time.Time
	closed bool
}

var _ Progress = (*TermProgress)(nil)

// NewTermProgress returns a Progress drawing on w, normally a terminal (see
// IsTerminal). Call Close at the end for the final state.
func NewTermProgress(w io.Writer) *TermProgress {
	return &TermProgress{w: w, interval: 100 * time.Millisecond}
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), ioctlGetTermios)
	return err == nil
}

// Update implements Progress.
func (p *TermProgress) Update(e Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if len(p.lines) < e.Layers {
		p.lines = append(p.lines, make([]Event, e.Layers-len(p.lines))...)
		for i := range p.lines {
			p.lines[i].Layer, p.lines[i].Layers = i, e.Layers
		}
	}
	if e.Layer < 0 || e.Layer >= len(p.lines) {
		return
	}
	// Failures and some events carry no digest or size: keep the known ones.
	prev := p.lines[e.Layer]
	if e.Digest == "" {
		e.Digest = prev.Digest
	}
	if e.Size == 0 {
		e.Size = prev.Size
	}
	p.lines[e.Layer] = e
	// Byte counts are throttled; state changes are always shown.
	if e.Kind == LayerBytes && time.Since(p.last) < p.interval {
		return
	}
	p.draw()
}

// Close draws the final state; later events are ignored.
func (p *TermProgress) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.draw()
		p.closed = true
	}
	return nil
}

func (p *TermProgress) draw() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn) // back to the top of the block
	}
	var done int
	var fetched, size, unpacked int64
	for _, e := range p.lines {
		b.WriteString("\x1b[2K\r")
		b.WriteString(formatLine(e))
		b.WriteByte('\n')
		if e.Kind == LayerApplied {
			done++
		}
		fetched, size, unpacked = fetched+e.Fetched, size+e.Size, unpacked+e.Unpacked
	}
	b.WriteString("\x1b[2K\r")
	fmt.Fprintf(&b, "%-12s %d/%-6d %9s / %-9s unpacked %9s\n", "total", done, len(p.lines), humanBytes(fetched), humanBytes(size), humanBytes(unpacked))
	p.drawn = len(p.lines) + 1
	p.last = time.Now()
	_, _ = io.WriteString(p.w, b.String())
}

func formatLine(e Event) string {
	d := e.Digest
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		d = d[i+1 : i+13]
	}
	state := "waiting"
	switch e.Kind {
	case LayerStarted, LayerBytes:
		state = "pulling"
	case LayerStaged:
		state = "unpacked"
	case LayerApplied:
		state = "done"
	case LayerFailed:
		state = "FAILED"
	}
	line := fmt.Sprintf("%-12s %-8s %9s / %-9s unpacked %9s", d, state, humanBytes(e.Fetched), humanBytes(e.Size), humanBytes(e.Unpacked))
	if e.Err != nil {
		line += ": " + e.Err.Error()
	}
	return line
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
