package main

import (
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/schollz/progressbar/v3"
)

// progress reports a long accessor walk: a bar on a terminal, otherwise a
// plain log line every few seconds once the walk is long enough to wonder
// about.
func (c *cli) progress(log zerolog.Logger) func(done, total int) {
	if f, ok := c.stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		var bar *progressbar.ProgressBar
		return func(done, total int) {
			if bar == nil {
				bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(c.stderr),
					progressbar.OptionSetDescription("looking up accessors"), progressbar.OptionShowCount(),
					progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
			}
			bar.Set(done)
		}
	}
	const longWalk, every = 1000, 5 * time.Second
	last := time.Now()
	return func(done, total int) {
		if total < longWalk || (time.Since(last) < every && done != total) {
			return
		}
		last = time.Now()
		log.Info().Int("done", done).Int("total", total).Msgf("sweep: looked up %d of %d accessors", done, total)
	}
}
