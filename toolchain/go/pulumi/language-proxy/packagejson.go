package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
)

// addDependencies sets each name to its version under "dependencies" in the package.json at path. The file
// keeps its members in their order and its indentation (npm's format: one member per line); a new
// dependency goes before the first one that sorts after it (npm keeps them sorted), a new "dependencies"
// object at the end. A file that already says all of it is left as it is.
func addDependencies(path string, deps map[string]string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("Link: the program has no package.json to add the SDK to: %w", err)
	}
	top, err := decodeObject(data)
	if err != nil {
		return fmt.Errorf("Link: %s: %w", path, err)
	}
	i := index(top, "dependencies")
	if i < 0 {
		top = append(top, member{key: "dependencies", value: json.RawMessage("{}")})
		i = len(top) - 1
	}
	current, err := decodeObject(top[i].value)
	if err != nil {
		return fmt.Errorf("Link: %s: \"dependencies\": %w", path, err)
	}
	changed := false
	for _, name := range slices.Sorted(maps.Keys(deps)) {
		value, err := encodeJSON(deps[name])
		if err != nil {
			return err
		}
		if j := index(current, name); j >= 0 {
			var old string
			if json.Unmarshal(current[j].value, &old) == nil && old == deps[name] {
				continue
			}
			current[j].value = value
		} else {
			at := len(current)
			for j, m := range current {
				if m.key > name {
					at = j
					break
				}
			}
			current = append(current[:at], append([]member{{key: name, value: value}}, current[at:]...)...)
		}
		changed = true
	}
	if !changed {
		return nil
	}
	if top[i].value, err = encodeObject(current); err != nil {
		return err
	}
	compact, err := encodeObject(top)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", indentOf(data)); err != nil {
		return err
	}
	if bytes.HasSuffix(data, []byte("\n")) {
		out.WriteByte('\n')
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out.Bytes(), info.Mode().Perm())
}

// member is one member of a JSON object, its value as written.
type member struct {
	key   string
	value json.RawMessage
}

// decodeObject splits a JSON object into its members, in order.
func decodeObject(data []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var members []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var m member
		m.key, _ = tok.(string)
		if err := dec.Decode(&m.value); err != nil {
			return nil, err
		}
		members = append(members, m)
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one JSON value")
	}
	return members, nil
}

// encodeObject joins members into a compact JSON object.
func encodeObject(members []member) (json.RawMessage, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		key, err := encodeJSON(m.key)
		if err != nil {
			return nil, err
		}
		b.Write(key)
		b.WriteByte(':')
		if err := json.Compact(&b, m.value); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// encodeJSON encodes a string as JSON without escaping <, > and & (package names and paths stay legible).
func encodeJSON(s string) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// indentOf returns the indentation of the first indented line of data: two spaces when there is none.
func indentOf(data []byte) string {
	for line := range strings.SplitSeq(string(data), "\n") {
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed != "" && len(trimmed) < len(line) {
			return line[:len(line)-len(trimmed)]
		}
	}
	return "  "
}

func index(members []member, key string) int {
	for i, m := range members {
		if m.key == key {
			return i
		}
	}
	return -1
}
