package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/devvm/vault-token-renew/internal/safetext"
	"github.com/devvm/vault-token-renew/renew"
)

// newLogger builds the one logger of a run, writing to w (stderr):
//   - console: coloured and aligned, for a person at a terminal;
//   - plain: one line per event, message first, then key=value fields;
//     under systemd each line carries a <N> syslog priority prefix so that
//     DRIFT and FAIL land at error priority (journalctl -p err);
//   - json: one JSON object per event, for machines;
//   - auto: console on a terminal, plain otherwise.
//
// Durations are logged as strings (fmtDur) everywhere, so no global zerolog
// setting is needed.
func newLogger(w io.Writer, format string, getenv func(string) string) (zerolog.Logger, error) {
	switch format {
	case "auto":
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			format = "console"
		} else {
			format = "plain"
		}
	case "console", "plain", "json":
	default:
		return zerolog.Logger{}, fmt.Errorf("--log-format %q: want auto, console, plain or json", format)
	}
	switch format {
	case "console":
		return zerolog.New(zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05", FormatPrepare: escapeMessage, FormatFieldValue: boundValue, FormatErrFieldValue: boundValue}).
			With().Timestamp().Logger(), nil
	case "json":
		// zerolog's JSON escapes every control character in a string.
		return zerolog.New(w).With().Timestamp().Logger(), nil
	}
	journal := toJournal(w, getenv("JOURNAL_STREAM"))
	return zerolog.New(zerolog.ConsoleWriter{
		Out:                 w,
		NoColor:             true,
		PartsOrder:          []string{zerolog.MessageFieldName},
		FormatFieldValue:    boundValue,
		FormatErrFieldValue: boundValue,
		FormatPrepare: func(evt map[string]interface{}) error {
			escapeMessage(evt)
			lvl, _ := evt[zerolog.LevelFieldName].(string)
			msg, _ := evt[zerolog.MessageFieldName].(string)
			if !hasStablePrefix(msg) && (lvl == "warn" || lvl == "error") {
				msg = lvl + ": " + msg
			}
			if journal {
				msg = syslogPriority(lvl) + msg
			}
			evt[zerolog.MessageFieldName] = msg
			return nil
		},
	}), nil
}

// escapeMessage makes a message one line of printable text, bounded,
// whatever it holds: a newline in it would end the journal entry and let
// the rest forge one of its own. Field values need no escaping (the
// console writer quotes any that holds a control character), only a bound.
func escapeMessage(evt map[string]interface{}) error {
	if msg, ok := evt[zerolog.MessageFieldName].(string); ok {
		evt[zerolog.MessageFieldName] = safetext.Text(msg)
	}
	return nil
}

func boundValue(v interface{}) string {
	if b, ok := v.([]byte); ok { // a number or a bool, as JSON
		return safetext.Cut(string(b), safetext.MaxText)
	}
	return safetext.Cut(fmt.Sprint(v), safetext.MaxText)
}

func hasStablePrefix(msg string) bool {
	for _, k := range renew.Kinds { // the prefixes an operator greps for in journalctl
		if strings.HasPrefix(msg, k.Prefix()+":") {
			return true
		}
	}
	return false
}

// syslogPriority is the prefix journald reads from a service's stderr
// (SyslogLevelPrefix=, on by default).
func syslogPriority(level string) string {
	switch level {
	case "error", "fatal", "panic":
		return "<3>"
	case "warn":
		return "<4>"
	case "debug", "trace":
		return "<7>"
	}
	return "<6>"
}

// toJournal reports whether w is the journal stream systemd connected to
// this service, the way systemd documents it: JOURNAL_STREAM holds the
// stream's "device:inode", and only when w's own device and inode match is
// w the journal. A child process inherits the variable with its stderr sent
// elsewhere, and must not write <N> prefixes there.
func toJournal(w io.Writer, stream string) bool {
	f, ok := w.(*os.File)
	if !ok || stream == "" {
		return false
	}
	dev, ino, ok := strings.Cut(stream, ":")
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return fmt.Sprint(st.Dev) == dev && fmt.Sprint(st.Ino) == ino
}
