package archive

import "time"

// History maintenance (the settings' defaults are pkg/config's; the store
// is opened by history.OpenLazy).
const (
	// MaintainEvery is the period of history maintenance (partitions
	// ahead, retention, parked expiry), run by delivery only.
	MaintainEvery = 10 * time.Minute
)
