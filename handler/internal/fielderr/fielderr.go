// Package fielderr is bad input named field by field: the one error every validator (org
// registration, sync settings, mail settings, messages) returns with all its problems at once,
// and the API turns into one 400 naming them.
package fielderr

import "strings"

// Field is one bad field and what is wrong with it.
type Field struct{ Field, Message string }

// List is every problem of one input; as an error, it is "invalid input: field: message; …".
type List []Field

func (l List) Error() string {
	parts := make([]string, len(l))
	for i, f := range l {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Add appends a problem.
func (l *List) Add(field, message string) { *l = append(*l, Field{field, message}) }

// Err is l as an error, or nil when it names no problem.
func (l List) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}
