package api

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// firstInvalidUTF8 is the byte offset of the first invalid UTF-8 sequence in data (len(data) if none).
func firstInvalidUTF8(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(data)
}

// firstLoneSurrogate is the byte offset of the first \uXXXX escape in data that is half of a
// UTF-16 surrogate pair without its other half (len(data) if none). Backslashes only occur inside
// JSON strings, so a plain scan of escapes is exact.
func firstLoneSurrogate(data []byte) int {
	hex := func(i int) (rune, bool) {
		if i+6 > len(data) || data[i] != '\\' || data[i+1] != 'u' {
			return 0, false
		}
		v, err := strconv.ParseUint(string(data[i+2:i+6]), 16, 16)
		return rune(v), err == nil
	}
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		r, ok := hex(i)
		if !ok {
			i++ // another escape: skip the escaped byte (\\ included)
			continue
		}
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			if lo, ok := hex(i + 6); ok && lo >= 0xDC00 && lo <= 0xDFFF {
				i += 11 // the pair
				continue
			}
			return i
		case r >= 0xDC00 && r <= 0xDFFF:
			return i
		}
		i += 5
	}
	return len(data)
}

// jsonFrame is an open JSON container while fieldAt walks a document.
type jsonFrame struct {
	array bool
	key   string // object: the current member's name
	index int    // array: the current element's index
	await bool   // object: the next string token is a member name
}

// done moves the container past one complete value.
func (f *jsonFrame) done() {
	if f.array {
		f.index++
	} else {
		f.await = true
	}
}

// fieldAt names the JSON value holding byte offset off of data — "firstName", "groupFilter[2]",
// "deletionThreshold.percent" — or "body" when off is in a member name or outside any value.
func fieldAt(data []byte, off int) string {
	var stack []jsonFrame
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return "body"
		}
		end := int(dec.InputOffset())
		var top *jsonFrame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{':
				stack = append(stack, jsonFrame{await: true})
			case '[':
				stack = append(stack, jsonFrame{array: true})
			default:
				stack = stack[:len(stack)-1]
				if len(stack) > 0 {
					stack[len(stack)-1].done()
				}
			}
			continue
		}
		if top != nil && !top.array && top.await {
			if end > off {
				return "body" // the bad bytes are in a member name: there is no field to name
			}
			top.key, top.await = tok.(string), false
			continue
		}
		if end > off {
			return jsonPath(stack)
		}
		if top != nil {
			top.done()
		}
	}
}

func jsonPath(stack []jsonFrame) string {
	var b []byte
	for _, f := range stack {
		if f.array {
			b = append(strconv.AppendInt(append(b, '['), int64(f.index), 10), ']')
			continue
		}
		if len(b) > 0 {
			b = append(b, '.')
		}
		b = append(b, f.key...)
	}
	if len(b) == 0 {
		return "body"
	}
	return string(b)
}
