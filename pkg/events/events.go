// Package events is the single source of truth for the VoxScriber webhook event
// catalogue: which event types exist, the fields of each type's data object,
// how producers' data is validated, the JSON Schema served by
// GET /v1/event-types, sample data for Send Test, and the exact JSON body
// that receivers are sent.
//
// Ingestion validates with [Validate] and [CheckSize] and builds bodies with
// [Envelope]; the registry serves [Catalogue] and [Type.JSONSchema]; delivery
// uses [Sample] for test deliveries. Operational types ([IsOperational]) are
// emitted by the suite itself; producers may not publish them.
package events

import "regexp"

// Field kinds, the values of [Field.Kind]. They are JSON Schema type names.
const (
	KindString  = "string"
	KindNumber  = "number"
	KindInteger = "integer" // a JSON number with no fractional part
)

// Field describes one field of an event's data object. Every field is
// required unless Optional; string fields must be non-empty.
type Field struct {
	Name        string   // JSON name, lowerCamelCase
	Kind        string   // KindString, KindNumber or KindInteger
	Description string   // what the field means, for documentation
	Min, Max    *float64 // inclusive bounds of numeric fields; nil = unbounded
	Pattern     string   // regular expression a string field must match; "" = any
	Format      string   // JSON Schema "format" of a string field, e.g. "date-time"; "" = none
	// Optional fields may be absent (never null); an envelope omits them
	// then. Sample leaves them out.
	Optional bool

	example any // realistic value used by Sample and the schema's "examples"
}

// Type is one event type of the catalogue.
type Type struct {
	Name        string // e.g. "transcription.completed"
	Description string
	Fields      []Field // in the order they appear in an envelope's data object
	// Operational types are emitted by the suite itself (endpoint.disabled,
	// endpoint.enabled, delivery.exhausted): producers may not publish
	// them, and none is emitted about the delivery of one.
	Operational bool
}

// IsOperational reports whether eventType is an operational type of the
// catalogue: one the suite emits itself and producers may not publish.
func IsOperational(eventType string) bool {
	t, ok := byName[eventType]
	return ok && t.Operational
}

// CountField is the optional integer field of every operational type that
// says how many occurrences one event stands for, when a burst was folded
// into it (absent: one).
const CountField = "count"

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
	endpointID = Field{
		Name: "endpointId", Kind: KindString,
		Description: "The endpoint the event is about.",
		example:     "ep_test_01JD5K8Q2W3E4R5T6Y7U8I9O0P",
	}
	endpointURL = Field{
		Name: "url", Kind: KindString,
		Description: "URL of that endpoint.",
		example:     "https://example.com/webhooks/voxscriber",
	}
	// count is the burst fold of operational events: at most one event per
	// endpoint and type per minute is emitted; the others are counted in it.
	count = Field{
		Name: CountField, Kind: KindInteger, Min: at(2), Optional: true,
		Description: "Present when a burst was folded into this event: how many occurrences it stands for " +
			"(at most one event per endpoint and type is emitted per minute). The other fields describe the latest one.",
		example: 20.0,
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
		{
			Name: "endpoint.disabled",
			Description: "The system disabled one of the account's endpoints after repeated failures or a 410 Gone answer; " +
				"its deliveries are parked until it is enabled again. Emitted by VoxScriber, never to the endpoint itself.",
			Operational: true,
			Fields: []Field{
				endpointID,
				endpointURL,
				{Name: "reason", Kind: KindString,
					Description: "Why the system disabled the endpoint.",
					example:     "5 consecutive failed attempts; last error: HTTP 503 Service Unavailable"},
				{Name: "lastError", Kind: KindString,
					Description: "Error of the attempt that led to the disable.",
					example:     "HTTP 503 Service Unavailable"},
				{Name: "disabledAt", Kind: KindString, Format: "date-time",
					Description: "When the endpoint was disabled (RFC 3339, UTC).",
					example:     "2026-11-26T19:43:16.123Z"},
				count,
			},
		},
		{
			Name: "endpoint.enabled",
			Description: "An endpoint the system had disabled was enabled again; its parked deliveries resume. " +
				"Emitted by VoxScriber, never to the endpoint itself.",
			Operational: true,
			Fields:      []Field{endpointID, endpointURL, count},
		},
		{
			Name: "delivery.exhausted",
			Description: "The final scheduled attempt of a delivery failed: the event will not be sent to that endpoint again " +
				"unless it is retried or replayed. Emitted by VoxScriber, never to the endpoint itself, and never about " +
				"the delivery of an operational event.",
			Operational: true,
			Fields: []Field{
				{Name: "deliveryId", Kind: KindString,
					Description: "The delivery whose attempts are exhausted.", example: "dlv_test_01JD5K8Q2W3E4R5T6Y7U8I9O0P"},
				{Name: "eventId", Kind: KindString,
					Description: "The event that was not delivered.", example: "evt_test_01JD5K8Q2W3E4R5T6Y7U8I9O0P"},
				{Name: "eventType", Kind: KindString,
					Description: "Type of that event.", example: "transcription.completed"},
				endpointID,
				{Name: "attempts", Kind: KindInteger, Min: at(1),
					Description: "Number of attempts made.", example: 5.0},
				{Name: "lastError", Kind: KindString,
					Description: "Error of the final attempt.", example: "connect: connection refused"},
				count,
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
