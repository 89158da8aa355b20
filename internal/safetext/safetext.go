// Package safetext makes words that came from elsewhere safe to print:
// a token's display name or meta (chosen by whoever made the token), an
// error body (from whatever answers at VAULT_ADDR), a file's or the
// environment's contents. Such words are data. Printed raw, a newline
// forges a journal line (with a <6> priority prefix of its own), an escape
// sequence hides the rows after it in a terminal, and a value of any
// length floods a log or overflows a notifier's environment.
//
// Every printer of the tool (the logger, status, the sweep table, the
// state file's summary, the notifier's environment) passes such words
// through this package: Escape where the printer bounds the whole, Value
// for one value, Text for a longer text such as a closing line.
package safetext

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxValue bounds one value from elsewhere (a display name, a meta value,
// an error item), in bytes of its escaped form.
const MaxValue = 256

// MaxText bounds a longer text (a closing line, a run's summary) in bytes
// of its escaped form: a few KiB, well under what an exec's environment
// allows.
const MaxText = 4096

// Value is s escaped and cut to MaxValue bytes.
func Value(s string) string { return Cut(Escape(s), MaxValue) }

// Text is s escaped and cut to MaxText bytes.
func Text(s string) string { return Cut(Escape(s), MaxText) }

// Escape writes every character that could move the cursor, end a line,
// start a terminal sequence or reorder text as a visible escape: \n, \r,
// \t, \x1b, \x00…, \u202e, and each byte of invalid UTF-8 as \xNN. A
// backslash stays as it is. Everything else, printable Unicode included,
// is kept.
func Escape(s string) string {
	if clean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80 && unsafe(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafe(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// unsafe: control characters (C0, DEL, C1) and format characters (bidi
// overrides and isolates, zero-width joiners), and the line and paragraph
// separators.
func unsafe(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}

func clean(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// Cut bounds s to n bytes, at a character's boundary, with a visible mark
// saying how much was cut.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	mark := fmt.Sprintf("…[%d bytes cut]", len(s)) // as long as any mark for s can be
	end := max(n-len(mark), 0)
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end] + fmt.Sprintf("…[%d bytes cut]", len(s)-end)
}
