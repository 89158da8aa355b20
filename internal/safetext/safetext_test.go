package safetext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestEscapeEveryControlCharacter: no C0 or C1 control character, DEL,
// format character or invalid byte survives; the printable stays.
func TestEscapeEveryControlCharacter(t *testing.T) {
	for r := rune(0); r < 0x110000; r++ {
		if r >= 0xd800 && r < 0xe000 {
			continue
		}
		got := Escape("a" + string(r) + "b")
		if unsafe(r) || r == '\n' || r == '\r' || r == '\t' {
			if strings.ContainsRune(got, r) {
				t.Fatalf("%U survived: %q", r, got)
			}
			continue
		}
		if got != "a"+string(r)+"b" {
			t.Fatalf("%U was changed: %q", r, got)
		}
	}
	for b := 0x80; b < 0x100; b++ {
		got := Escape("a" + string([]byte{byte(b)}) + "b")
		if !utf8.ValidString(got) || got == "a"+string([]byte{byte(b)})+"b" {
			t.Fatalf("invalid byte %#x survived: %q", b, got)
		}
	}
}

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "token-devvm-wizard", "token-devvm-wizard"},
		{"unicode stays", "oidc-jürgen-日本", "oidc-jürgen-日本"},
		{"a forged journal line", "x\n<6>OK: renewed periodic token\n<7>", `x\n<6>OK: renewed periodic token\n<7>`},
		{"a carriage return", "ok\rFAIL", `ok\rFAIL`},
		{"ESC sequences", "z\x1b[8m hidden \x1b]0;title\x07", `z\x1b[8m hidden \x1b]0;title\x07`},
		{"C1 CSI", "a\u009b8mb", `a\u009b8mb`},
		{"bidi override", "evil\u202etxt.exe", `evil\u202etxt.exe`},
		{"NUL and DEL", "a\x00b\x7fc", `a\x00b\x7fc`},
		{"invalid UTF-8", "a\xffb", `a\xffb`},
		{"a line separator", "a\u2028b", `a\u2028b`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Escape(tc.in); got != tc.want {
				t.Fatalf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if got := Value(tc.in); strings.ContainsAny(got, "\n\r\x1b") {
				t.Fatalf("Value(%q) = %q", tc.in, got)
			}
		})
	}
}

// TestBounds: a 1 MiB value comes out within its bound, says how much was
// cut, and stays valid UTF-8 when cut inside a character.
func TestBounds(t *testing.T) {
	huge := strings.Repeat("é\n", 1<<19) // 1.5 MiB, escaped larger
	for _, tc := range []struct {
		name string
		fn   func(string) string
		max  int
	}{{"Value", Value, MaxValue}, {"Text", Text, MaxText}} {
		got := tc.fn(huge)
		if len(got) > tc.max || !strings.Contains(got, "bytes cut]") || !utf8.ValidString(got) || strings.Contains(got, "\n") {
			t.Errorf("%s of 1 MiB: %d bytes, %q…", tc.name, len(got), got[:40])
		}
	}
	if got := Value(strings.Repeat("a", MaxValue)); got != strings.Repeat("a", MaxValue) {
		t.Error("a value at the bound was cut")
	}
}
