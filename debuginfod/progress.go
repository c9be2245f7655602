package debuginfod

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"

	"golang.org/x/sys/unix"
)

// progress reports one download: on a terminal a line redrawn at most
// five times a second, elsewhere a line at the start and one at the end.
type progress struct {
	w        io.Writer
	tty      bool
	what     string
	total    int64
	start    time.Time
	lastDraw time.Time
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func newProgress(w io.Writer, name string, kind Kind, id, host string, total int64) *progress {
	if w == nil {
		return nil
	}
	// The name comes from the dump (a release, a module name): nothing
	// in it may reach the terminal as a control sequence.
	what := strings.Map(func(r rune) rune {
		if !unicode.IsGraphic(r) {
			return '?'
		}
		return r
	}, name)
	if what == "" {
		what = kind.String()
	}
	p := &progress{w: w, tty: isTerminal(w), total: total, start: time.Now(),
		what: fmt.Sprintf("%s (build id %s) from %s", what, id, host)}
	if !p.tty {
		size := "size unknown"
		if total >= 0 {
			size = mb(total)
		}
		fmt.Fprintf(w, "debuginfod: downloading %s, %s\n", p.what, size)
	}
	return p
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func (p *progress) update(n int64) {
	if p == nil || !p.tty {
		return
	}
	now := time.Now()
	if now.Sub(p.lastDraw) < 200*time.Millisecond {
		return
	}
	p.lastDraw = now
	p.draw(n)
}

func (p *progress) draw(n int64) {
	const width = 30
	if p.total > 0 {
		filled := int(int64(width) * n / p.total)
		if filled > width {
			filled = width
		}
		bar := make([]byte, width)
		for i := range bar {
			bar[i] = ' '
			if i < filled {
				bar[i] = '='
			}
		}
		fmt.Fprintf(p.w, "\r\x1b[Kdebuginfod: %s [%s] %s / %s", p.what, bar, mb(n), mb(p.total))
		return
	}
	fmt.Fprintf(p.w, "\r\x1b[Kdebuginfod: %s %s", p.what, mb(n))
}

func (p *progress) done(n int64, err error) {
	if p == nil {
		return
	}
	secs := time.Since(p.start).Seconds()
	if p.tty {
		p.draw(n)
		fmt.Fprintln(p.w)
		return
	}
	if err != nil {
		fmt.Fprintf(p.w, "debuginfod: %s: failed after %s in %.1f s\n", p.what, mb(n), secs)
		return
	}
	fmt.Fprintf(p.w, "debuginfod: %s: %s in %.1f s\n", p.what, mb(n), secs)
}
