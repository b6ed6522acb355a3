// Package shard is the one definition of the delivery shards: delivery's
// Redis keys are spread over Count hash slots, tagged `{s<n>}`, with
// n = fnv32a(id) % Count. Every package that names a shard's keys
// (services/delivery's redisqueue, pkg/auditlog's per-shard audit hashes,
// the registry's audit mover that drains them) uses this package, so the
// count cannot drift between them.
package shard

import (
	"hash/fnv"
	"strconv"
)

// Count is the number of shards. It is fixed in the code, not read from
// the environment: a delivery's keys live in the shard its id hashes to,
// so changing it strands existing deliveries (and per-shard audit entries
// not yet moved).
const Count = 16

// Of is the shard of an id.
func Of(id string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % Count)
}

// Tag is the hash tag of shard n: `{s<n>}`.
func Tag(n int) string { return "{s" + strconv.Itoa(n) + "}" }
