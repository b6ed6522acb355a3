// Package events is the single source of truth for the VoxScriber webhook event
// catalogue: which event types exist, the fields of each type's data object,
// how producers' data is validated, the JSON Schema served by
// GET /v1/event-types, sample data for Send Test, and the exact JSON body
// that receivers are sent.
//
// Ingestion validates with [Validate] and [CheckSize] and builds bodies with
// [Envelope]; the registry serves [Catalogue] and [Type.JSONSchema]; delivery
// uses [Sample] for test deliveries.
package events

import "regexp"

// Field kinds, the values of [Field.Kind]. They are JSON Schema type names.
const (
	KindString  = "string"
	KindNumber  = "number"
	KindInteger = "integer" // a JSON number with no fractional part
)

// Field describes one field of an event's data object. Every field of every
// type is required; string fields must be non-empty.
type Field struct {
	Name        string   // JSON name, lowerCamelCase
	Kind        string   // KindString, KindNumber or KindInteger
	Description string   // what the field means, for documentation
	Min, Max    *float64 // inclusive bounds of numeric fields; nil = unbounded
	Pattern     string   // regular expression a string field must match; "" = any

	example any // realistic value used by Sample and the schema's "examples"
}

// Type is one event type of the catalogue.
type Type struct {
	Name        string // e.g. "transcription.completed"
	Description string
	Fields      []Field // in the order they appear in an envelope's data object
}

// Catalogue returns the event types in their documented order. The result is
// a copy: callers may modify it freely.
func Catalogue() []Type {
	out := make([]Type, len(catalogue))
	for i := range catalogue {
		out[i] = catalogue[i].clone()
	}
	return out
}

// Lookup returns the event type with the given name (a copy, like Catalogue).
func Lookup(name string) (Type, bool) {
	t, ok := byName[name]
	if !ok {
		return Type{}, false
	}
	return t.clone(), true
}

// clone returns a deep copy of t, so callers cannot modify the catalogue.
func (t *Type) clone() Type {
	c := *t
	c.Fields = make([]Field, len(t.Fields))
	for i, f := range t.Fields {
		f.Min, f.Max = bound(f.Min), bound(f.Max)
		c.Fields[i] = f
	}
	return c
}

// bound returns a pointer to a copy of *p, or nil if p is nil.
func bound(p *float64) *float64 {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// at returns a pointer to v, for writing bounds in the catalogue.
func at(v float64) *float64 { return &v }

// The catalogue itself. It is read-only after package initialisation; the
// exported functions hand out copies.
var (
	uploadID = Field{
		Name: "uploadId", Kind: KindString,
		Description: "Identifier of the uploaded audio file.",
		example:     "upl_test_2f9c4e7a1b",
	}
	engine = Field{
		Name: "engine", Kind: KindString,
		Description: "Transcription engine processing the upload.",
		example:     "whisper-large-v3",
	}

	catalogue = []Type{
		{
			Name:        "transcription.started",
			Description: "A transcription started processing.",
			Fields:      []Field{uploadID, engine},
		},
		{
			Name:        "transcription.progress",
			Description: "The progress of a transcription was updated.",
			Fields: []Field{
				uploadID,
				{Name: "percentage", Kind: KindNumber, Min: at(0), Max: at(100),
					Description: "Percentage of the audio transcribed so far, 0 to 100.", example: 45.0},
				{Name: "estimate", Kind: KindNumber, Min: at(0),
					Description: "Estimated seconds remaining until completion.", example: 38.0},
			},
		},
		{
			Name:        "transcription.completed",
			Description: "A transcription completed successfully.",
			Fields: []Field{
				uploadID,
				{Name: "text", Kind: KindString,
					Description: "The transcribed text.",
					example:     "Hello from VoxScriber! This is a test transcription sent to check your webhook endpoint."},
				{Name: "duration", Kind: KindNumber, Min: at(0),
					Description: "Duration of the audio, in seconds.", example: 12.5},
				{Name: "credits", Kind: KindNumber, Min: at(0),
					Description: "Credits charged for the transcription.", example: 3.0},
			},
		},
		{
			Name:        "transcription.failed",
			Description: "A transcription failed.",
			Fields: []Field{
				uploadID,
				{Name: "error", Kind: KindString,
					Description: "Human-readable description of the failure.",
					example:     "The audio format is not supported."},
				{Name: "errorType", Kind: KindString, Pattern: `^[a-z][a-z0-9_]*$`,
					Description: "Machine-readable failure category in lowercase snake_case, e.g. " +
						"unsupported_format, engine_error, timeout, insufficient_credits.",
					example: "unsupported_format"},
			},
		},
		{
			Name:        "transcription.retry",
			Description: "A transcription retry attempt started.",
			Fields: []Field{
				uploadID,
				{Name: "attempt", Kind: KindInteger, Min: at(1),
					Description: "Number of the attempt that started, from 1.", example: 2.0},
				engine,
			},
		},
		{
			Name:        "upload.completed",
			Description: "An audio file upload completed.",
			Fields: []Field{
				uploadID,
				{Name: "size", Kind: KindInteger, Min: at(0),
					Description: "Size of the uploaded file, in bytes.", example: 4815162.0},
				{Name: "format", Kind: KindString,
					Description: "Audio format of the file, e.g. mp3, wav.", example: "mp3"},
			},
		},
		{
			Name:        "credits.low",
			Description: "The account's credit balance fell below its configured threshold.",
			Fields: []Field{
				{Name: "balance", Kind: KindNumber,
					Description: "Current credit balance.", example: 8.0},
				{Name: "threshold", Kind: KindNumber,
					Description: "Configured low-credit threshold.", example: 10.0},
			},
		},
	}

	byName   = indexTypes(catalogue)
	patterns = compilePatterns(catalogue)
)

func indexTypes(types []Type) map[string]*Type {
	m := make(map[string]*Type, len(types))
	for i := range types {
		m[types[i].Name] = &types[i]
	}
	return m
}

func compilePatterns(types []Type) map[string]*regexp.Regexp {
	m := make(map[string]*regexp.Regexp)
	for _, t := range types {
		for _, f := range t.Fields {
			if f.Pattern != "" {
				m[f.Pattern] = regexp.MustCompile(f.Pattern)
			}
		}
	}
	return m
}
