package events

// jsonSchemaDialect identifies the JSON Schema draft used by Type.JSONSchema.
const jsonSchemaDialect = "https://json-schema.org/draft/2020-12/schema"

// JSONSchema returns the JSON Schema (draft 2020-12) of t's data object:
// every field not Optional is required; an operational type's schema is
// marked "x-operational": true.
// It holds only map[string]any, []any, string, float64 and bool values, so it
// can be passed to encoding/json or structpb.NewStruct as is. Each call
// returns a new map.
func (t Type) JSONSchema() map[string]any {
	properties := make(map[string]any, len(t.Fields))
	required := make([]any, 0, len(t.Fields))
	for _, f := range t.Fields {
		properties[f.Name] = f.jsonSchema()
		if !f.Optional {
			required = append(required, f.Name)
		}
	}
	s := map[string]any{
		"$schema":              jsonSchemaDialect,
		"title":                t.Name,
		"description":          t.Description,
		"type":                 "object",
		"properties":           properties,
		"required":             required,
		"additionalProperties": false,
	}
	if t.Operational {
		// A JSON Schema annotation for documentation and the dashboard:
		// VoxScriber emits these, producers cannot publish them.
		s["x-operational"] = true
	}
	return s
}

// jsonSchema returns the schema of a single field.
func (f *Field) jsonSchema() map[string]any {
	s := map[string]any{
		"type":        f.Kind,
		"description": f.Description,
	}
	if f.Kind == KindString {
		s["minLength"] = 1.0
	}
	if f.Pattern != "" {
		s["pattern"] = f.Pattern
	}
	if f.Format != "" {
		s["format"] = f.Format
	}
	if f.Min != nil {
		s["minimum"] = *f.Min
	}
	if f.Max != nil {
		s["maximum"] = *f.Max
	}
	if f.example != nil {
		s["examples"] = []any{f.example}
	}
	return s
}
