package events

import "strings"

// Wildcard, in an endpoint's event types, subscribes it to every type.
const Wildcard = "*"

// Subscribed reports whether an endpoint's event-types entry takes
// eventType: the type itself, [Wildcard], or a category ("transcription.*")
// that the type belongs to. The registry answers its subscriber lists by
// it, and so does its test double (pkg/registrytest).
func Subscribed(entry, eventType string) bool {
	switch {
	case entry == Wildcard || entry == eventType:
		return true
	case strings.HasSuffix(entry, ".*"):
		return strings.HasPrefix(eventType, strings.TrimSuffix(entry, "*"))
	}
	return false
}
