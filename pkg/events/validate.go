package events

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultMaxPayloadBytes is the default limit on the size of an event payload.
const DefaultMaxPayloadBytes = 256 << 10

// MaxOrderingKeyBytes bounds an event's ordering key: ingestion refuses a
// longer one from a producer, delivery a longer one in a Schedule call.
const MaxOrderingKeyBytes = 200

// ValidationError reports the first problem found in an event. Field names
// the offending part: "type", "data" or "data.<field>". Message is human
// readable and starts with the field, e.g.
// `data.percentage: must be a number between 0 and 100, got "abc"`.
type ValidationError struct {
	Field, Message string
}

func (e *ValidationError) Error() string { return e.Message }

// invalid builds a ValidationError whose message is prefixed with field.
func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Message: field + ": " + fmt.Sprintf(format, args...)}
}

// knownTypes lists the catalogue's type names, for error messages.
var knownTypes = func() string {
	names := make([]string, len(catalogue))
	for i, t := range catalogue {
		names[i] = t.Name
	}
	return strings.Join(names, ", ")
}()

// Validate checks that eventType is in the catalogue and that data (as
// decoded by encoding/json or structpb's AsMap) matches its fields; only
// Optional fields may be absent. A nil map is treated as empty. The error, if any, is a *ValidationError for the first
// problem in this order: the type; missing fields; wrong types or values, in
// catalogue field order; unknown fields, sorted by name.
func Validate(eventType string, data map[string]any) error {
	t, ok := byName[eventType]
	if !ok {
		if eventType == "" {
			return invalid("type", "is required; known types: %s", knownTypes)
		}
		return invalid("type", "unknown event type %s; known types: %s", describe(eventType), knownTypes)
	}
	for i := range t.Fields {
		f := &t.Fields[i]
		if _, ok := data[f.Name]; !ok && !f.Optional {
			return invalid(f.path(), "is required")
		}
	}
	for i := range t.Fields {
		f := &t.Fields[i]
		v, ok := data[f.Name]
		if !ok {
			continue // an absent optional field
		}
		if err := f.check(v); err != nil {
			return err
		}
	}
	var unknown []string
	for name := range data {
		if !t.hasField(name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		return invalid("data."+slices.Min(unknown), "is not a field of %s; known fields: %s", t.Name, t.fieldNames())
	}
	return nil
}

// CheckSize reports a *ValidationError for field "data" when payload is
// larger than max bytes. A max of zero or less means DefaultMaxPayloadBytes.
func CheckSize(payload []byte, max int) error {
	if max <= 0 {
		max = DefaultMaxPayloadBytes
	}
	if len(payload) > max {
		return invalid("data", "payload is %d bytes, larger than the limit of %d bytes", len(payload), max)
	}
	return nil
}

// check validates the value v of field f, which is present in the data.
func (f *Field) check(v any) error {
	if f.Kind == KindString {
		s, ok := v.(string)
		switch {
		case !ok:
			return invalid(f.path(), "must be a non-empty string, got %s", describe(v))
		case s == "":
			return invalid(f.path(), "must not be empty")
		case !utf8.ValidString(s):
			return invalid(f.path(), "must be valid UTF-8")
		case f.Pattern != "" && !patterns[f.Pattern].MatchString(s):
			return invalid(f.path(), "must match %s, got %s", f.Pattern, describe(v))
		}
		return nil
	}
	x, ok := number(v)
	if !ok || math.IsNaN(x) || math.IsInf(x, 0) ||
		(f.Kind == KindInteger && x != math.Trunc(x)) ||
		(f.Min != nil && x < *f.Min) || (f.Max != nil && x > *f.Max) {
		return invalid(f.path(), "must be %s, got %s", f.expectation(), describe(v))
	}
	return nil
}

// expectation describes the numbers f accepts, e.g. "a number between 0 and
// 100" or "an integer >= 1".
func (f *Field) expectation() string {
	s := "a number"
	if f.Kind == KindInteger {
		s = "an integer"
	}
	switch {
	case f.Min != nil && f.Max != nil:
		return fmt.Sprintf("%s between %s and %s", s, formatNumber(*f.Min), formatNumber(*f.Max))
	case f.Min != nil:
		return fmt.Sprintf("%s >= %s", s, formatNumber(*f.Min))
	case f.Max != nil:
		return fmt.Sprintf("%s <= %s", s, formatNumber(*f.Max))
	}
	return s
}

// path is the field's name as reported in a ValidationError.
func (f *Field) path() string { return "data." + f.Name }

func (t *Type) hasField(name string) bool {
	return slices.ContainsFunc(t.Fields, func(f Field) bool { return f.Name == name })
}

// fieldNames lists t's field names in catalogue order, for error messages.
func (t *Type) fieldNames() string {
	names := make([]string, len(t.Fields))
	for i, f := range t.Fields {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

// number returns v as a float64 if it is a number: a float64 as decoded from
// JSON or protobuf or, for Go callers' convenience, a value of any other Go
// numeric type or a json.Number.
func number(v any) (float64, bool) {
	if x, ok := v.(float64); ok { // the common case
		return x, true
	}
	if n, ok := v.(json.Number); ok {
		x, err := n.Float64()
		return x, err == nil
	}
	switch rv := reflect.ValueOf(v); {
	case rv.CanFloat():
		return rv.Float(), true
	case rv.CanInt():
		return float64(rv.Int()), true
	case rv.CanUint():
		return float64(rv.Uint()), true
	}
	return 0, false
}

// maxQuoted is how many bytes of a string value an error message quotes.
const maxQuoted = 64

// describe renders a value for an error message: strings quoted (and
// shortened), numbers as in JSON, objects and arrays by their kind only.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		if len(v) <= maxQuoted {
			return strconv.Quote(v)
		}
		cut := maxQuoted
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		return strconv.Quote(v[:cut]) + "…"
	case bool:
		return strconv.FormatBool(v)
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	if x, ok := number(v); ok {
		return formatNumber(x)
	}
	return fmt.Sprintf("a value of Go type %T", v)
}
