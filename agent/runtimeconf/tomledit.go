package runtimeconf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// parseTOML decodes data into a generic map; a syntax error names the file
// and the line.
func parseTOML(file string, data []byte) (map[string]any, error) {
	var m map[string]any
	if err := toml.Unmarshal(data, &m); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, _ := de.Position()
			return nil, fmt.Errorf("%w %s:%d: %s", ErrParse, file, row, de.Error())
		}
		var sme *toml.StrictMissingError
		if errors.As(err, &sme) {
			return nil, fmt.Errorf("%w %s: %s", ErrParse, file, sme.Error())
		}
		return nil, fmt.Errorf("%w %s: %w", ErrParse, file, err)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// lookup follows keys through nested tables.
func lookup(m map[string]any, keys ...string) (any, bool) {
	var cur any = m
	for _, k := range keys {
		t, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = t[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// headerKeys parses a table header line "[a."b.c".d]" into its keys; ok is
// false for a line that is no (single-bracket) table header.
func headerKeys(line string) ([]string, bool) {
	s := strings.TrimSpace(line)
	if !strings.HasPrefix(s, "[") || strings.HasPrefix(s, "[[") {
		return nil, false
	}
	s = s[1:]
	var keys []string
	for {
		s = strings.TrimLeft(s, " \t")
		var key string
		switch {
		case strings.HasPrefix(s, `"`):
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, false
			}
			k, err := strconv.Unquote(s[:end+2])
			if err != nil {
				return nil, false
			}
			key, s = k, s[end+2:]
		case strings.HasPrefix(s, "'"):
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return nil, false
			}
			key, s = s[1:end+1], s[end+2:]
		default:
			end := strings.IndexAny(s, ". \t]")
			if end <= 0 {
				return nil, false
			}
			key, s = s[:end], s[end:]
		}
		keys = append(keys, key)
		s = strings.TrimLeft(s, " \t")
		switch {
		case strings.HasPrefix(s, "."):
			s = s[1:]
		case strings.HasPrefix(s, "]"):
			rest := strings.TrimSpace(s[1:])
			if rest != "" && !strings.HasPrefix(rest, "#") {
				return nil, false
			}
			return keys, true
		default:
			return nil, false
		}
	}
}

func isHeader(line string) bool {
	return strings.HasPrefix(strings.TrimSpace(line), "[")
}

func sameKeys(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// tableSpan finds the lines of table keys: [start, end) with start the
// header line. ok is false when no header names it.
func tableSpan(lines []string, keys []string) (start, end int, ok bool) {
	for i, l := range lines {
		if k, isHdr := headerKeys(l); isHdr && sameKeys(k, keys) {
			end = i + 1
			for end < len(lines) && !isHeader(lines[end]) {
				end++
			}
			return i, end, true
		}
	}
	return 0, 0, false
}

// keyLine finds the line in [start, end) that assigns key (bare, at the
// start of the line).
func keyLine(lines []string, start, end int, key string) (int, bool) {
	for i := start; i < end; i++ {
		s := strings.TrimLeft(lines[i], " \t")
		if rest, ok := strings.CutPrefix(s, key); ok {
			if r := strings.TrimLeft(rest, " \t"); strings.HasPrefix(r, "=") {
				return i, true
			}
		}
	}
	return 0, false
}

// quoteHeader writes keys as a header, quoting those that need it.
func quoteHeader(keys []string) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		if k != "" && strings.IndexFunc(k, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
		}) < 0 {
			parts[i] = k
		} else {
			parts[i] = strconv.Quote(k)
		}
	}
	return "[" + strings.Join(parts, ".") + "]"
}

// setKey sets key = value (value already TOML) in table keys of text: the
// value of an existing assignment line is replaced, keeping its
// indentation; a missing key is added under the header; a missing table is
// appended. Every other byte stays as it was.
func setKey(text string, table []string, key, value string) string {
	lines := splitLines(text)
	if start, end, ok := tableSpan(lines, table); ok {
		if i, ok := keyLine(lines, start+1, end, key); ok {
			indent := lines[i][:len(lines[i])-len(strings.TrimLeft(lines[i], " \t"))]
			lines[i] = indent + key + " = " + value + "\n"
			return strings.Join(lines, "")
		}
		indent := lines[start][:len(lines[start])-len(strings.TrimLeft(lines[start], " \t"))] + "  "
		if !strings.HasSuffix(lines[start], "\n") {
			lines[start] += "\n"
		}
		lines = append(lines[:start+1], append([]string{indent + key + " = " + value + "\n"}, lines[start+1:]...)...)
		return strings.Join(lines, "")
	}
	return appendBlock(text, quoteHeader(table)+"\n  "+key+" = "+value+"\n")
}

// appendBlock appends a block after a blank line.
func appendBlock(text, block string) string {
	switch {
	case text == "":
		return block
	case !strings.HasSuffix(text, "\n"):
		text += "\n\n"
	case !strings.HasSuffix(text, "\n\n"):
		text += "\n"
	}
	return text + block
}

// replaceTable replaces the lines of table keys (header to next header,
// trailing blank lines kept) with block, or appends block when it is absent.
func replaceTable(text string, table []string, block string) string {
	lines := splitLines(text)
	start, end, ok := tableSpan(lines, table)
	if !ok {
		return appendBlock(text, block)
	}
	for end > start+1 && strings.TrimSpace(lines[end-1]) == "" {
		end--
	}
	out := strings.Join(lines[:start], "") + block + strings.Join(lines[end:], "")
	return out
}

func tomlString(s string) string { return strconv.Quote(s) }

func tomlStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
