package events

// Sample returns realistic data for a test delivery (Send Test) of the named
// event type (its required fields), or false if the type is unknown. The data passes Validate, and
// each call returns a new map that the caller may modify.
func Sample(eventType string) (map[string]any, bool) {
	t, ok := byName[eventType]
	if !ok {
		return nil, false
	}
	data := make(map[string]any, len(t.Fields))
	for _, f := range t.Fields {
		if !f.Optional {
			data[f.Name] = f.example
		}
	}
	return data, true
}
